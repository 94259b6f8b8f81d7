"""A small development host that stands in for the Azure Functions runtime where Core Tools are missing.

It reads the triggers from ``function_app.app.get_functions()`` and drives them: blob triggers by polling
containers (receipts and the poison queue in storage, like the runtime), Event Grid triggers through the
runtime's webhook path, and timers on their NCRONTAB schedules. It is a development host, not a
replacement for the Functions runtime.

Imports stay light here: ``from local.host.host import LocalHost`` pulls in the storage SDK and
Starlette only when a host is wanted.
"""
