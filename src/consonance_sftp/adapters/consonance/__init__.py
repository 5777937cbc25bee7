"""Consonance GraphQL client (httpx) behind the ConsonanceAPI port."""
