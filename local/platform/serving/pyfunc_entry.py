"""MLflow "models from code" entry point of the saved chat model (MLflow copies this file into the model).

Loading it builds the Python class by import instead of unpickling an object, so opening a saved model
runs no pickled code.
"""

from __future__ import annotations

from mlflow.models import set_model

from local.platform.serving.chat_pyfunc import ChatPyfuncModel

set_model(ChatPyfuncModel())
