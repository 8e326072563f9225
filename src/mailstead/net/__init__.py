"""asyncio listeners and sessions that bind the sans-IO protocols to sockets."""
