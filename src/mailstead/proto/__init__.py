"""Sans-IO protocol engines: bytes in, events out, replies to bytes.

Nothing in this package may import asyncio, socket, ssl, os or time; the
``net`` package binds these objects to real connections.
"""
