"""The Azure ML adapter of the platform port: the seed notebook's steps, made idempotent and non-blocking.

Modules: ``clients`` (credential and lazily built clients), ``errors`` (azure-core errors to the app's),
``compute`` (the seed's compute checks), ``pipeline`` (the ``chat_completion_pipeline`` job), ``jobs`` (its
submit, reads and listing), ``models`` (registration, reads and aliases), ``deployments`` (starting endpoints
and deployments, their state), ``endpoints`` (reading, listing, traffic, deletes, invoke), ``monitor``
(request metrics for the idle check), ``offline`` (component spec and model tags from files, for
``autopilot plan``), ``adapter`` (the port, handing each call to those parts).
Nothing here is imported by the app until the ``azureml`` platform is built.
"""
