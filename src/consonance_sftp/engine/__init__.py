"""Durable execution on DBOS Transact: workflows, queues, schedules, recovery. The only package
that imports DBOS.
"""
