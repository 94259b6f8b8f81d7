"""Tests of the Azure ML adapter (no network: autospecced SDK clients, fakes with state, fixture files)."""

import warnings

from marshmallow.warnings import Marshmallow4Warning

# azure-ai-ml's schemas use marshmallow APIs deprecated for 4.0: thousands of warnings at import and on every
# serialisation that say nothing about this app. Set before the SDK is first imported (collection) ...
warnings.filterwarnings("ignore", category=Marshmallow4Warning)
# ... and applied to each test run (pytest resets the filters around every test).
SDK_WARNINGS = "ignore::marshmallow.warnings.Marshmallow4Warning"
