"""Operations package shared by tasks.py, noxfile.py and the tests.

Dependencies point one way: ops drives the service through its CLI, API and files and never
imports the service package at module import time.
"""
