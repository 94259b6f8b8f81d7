"""The Azure Functions app (Python v2 programming model): registers one blueprint per trigger family.

Importing this module must stay cheap: no azure.ai.ml, mlflow, torch or transformers at import time.
"""

import azure.functions as func

from functions.events import bp as events_bp
from functions.followups import bp as followups_bp
from functions.submit import bp as submit_bp
from functions.timers import bp as timers_bp
from shared.telemetry_setup import configure_function_app

# Spans and logs of every run, with the run's names, to Application Insights (docs/observability.md).
configure_function_app()

app = func.FunctionApp()
app.register_functions(submit_bp)
app.register_functions(events_bp)
app.register_functions(timers_bp)
app.register_functions(followups_bp)
