"""A local Event Grid custom topic: the real azure-eventgrid SDK publishes to it unchanged, and it
delivers to webhooks with Event Grid's handshake, retry schedule and dead-lettering.

Run it with `python -m localdev.eventgrid serve ...` or `launcher.start_eventgrid(...)`;
see docs/eventgrid-emulator.md.
"""
