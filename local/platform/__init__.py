"""The local ML platform: foundation models, dataset preparation, the training recipe and the chat model.

Everything here runs on one machine with no cloud: models are materialised into a cache as Hugging Face
directories, jobs run the recipe in ``training`` in their own process, and endpoints serve ``ChatModel``.
"""
