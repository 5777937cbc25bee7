"""Local stand-ins for the demo and the tests: a Consonance-compatible GraphQL server and SFTP
partner servers. The core never imports this package.
"""
