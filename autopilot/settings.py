"""The CLI's settings, one loader for every command: the process environment, the checkout's
``local.settings.json``, then the checkout's azd environment; the first of them that sets a value wins.

The checkout is ``AUTOPILOT_PROJECT_DIR`` when set, else the nearest directory at or above the current one that
holds ``azure.yaml`` (where azd looks for the project), else the current directory.

The azd environment is the one ``azd up`` wrote (azd's "Work with environments": each environment is
``.azure/<name>/.env``, the default one is named by ``.azure/config.json``'s ``defaultEnvironment``, and
``AZURE_ENV_NAME`` in the process environment picks another). Its ``.env`` holds the template's outputs
(``infra/main.bicep``) and what was set with ``azd env set``; a key that names a setting of the app is that
setting, and two of azd's own names are read as the settings they are: ``AZURE_SUBSCRIPTION_ID`` (the
workspace is in the deployment's subscription) and ``AZURE_STORAGE_ACCOUNT_NAME`` (the app's storage, reached
with an identity-based connection, ``AzureWebJobsStorage__accountName``). So after ``azd up`` every command
works on the deployment with no further setup. ``up``, ``down``, ``host`` and ``demo`` run the local twin and
read no azd environment.

The CLI runs on a person's machine, so it asks for the person's login explicitly (``az login``, then
``azd auth login``; shared/identity.py); the Function App never does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared import runtime
from shared.settings import DEFAULTS, STORAGE_SETTING, Settings, read_local_settings

log = logging.getLogger(__name__)

PROJECT_DIR_SETTING = "AUTOPILOT_PROJECT_DIR"
LOCAL_SETTINGS_FILE = "local.settings.json"
AZD_ENV_NAME = "AZURE_ENV_NAME"
STORAGE_ACCOUNT_SETTING = f"{STORAGE_SETTING}__accountName"
# azd's names (its own AZURE_SUBSCRIPTION_ID; the template's outputs) for what the app's settings call otherwise.
AZD_NAMES = {
    "AZURE_SUBSCRIPTION_ID": "AZUREML_SUBSCRIPTION_ID",
    "AZURE_STORAGE_ACCOUNT_NAME": STORAGE_ACCOUNT_SETTING,
}
# How a command reads its settings (``settings=`` in its parser's defaults; see ``autopilot.main``).
DEPLOYMENT = "deployment"  # every source, the azd environment included; the runtime is built from them
LOCAL_TWIN = "local"  # the local twin's commands read theirs with ``local_twin()`` (no azd environment)
NO_SETTINGS = "none"  # needs none (validate)
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SettingsFileError(ValueError):
    """A settings file of the checkout cannot be read; the message names the file."""


@dataclass(frozen=True)
class AzdEnvironment:
    """One azd environment of the checkout: its name, its ``.env`` and the values in it."""

    name: str
    path: Path
    values: dict[str, str]

    def settings(self) -> dict[str, str]:
        """Its values under the names of the app's settings (keys that name no setting are left out)."""
        named = {AZD_NAMES.get(key, key): value for key, value in self.values.items() if value}
        return {key: value for key, value in named.items() if key in DEFAULTS}


@dataclass(frozen=True)
class Sources:
    """The merged values the settings are read from, and where each came from."""

    values: dict[str, str]
    origins: dict[str, str]
    azd: AzdEnvironment | None

    def settings(self) -> Settings:
        """The settings of a person's machine: their login is asked for (shared/identity.py)."""
        return dataclasses.replace(Settings.from_env(self.values), allow_developer_credentials=True)


def project_dir(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The checkout whose files the CLI reads (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(PROJECT_DIR_SETTING):
        return Path(environ[PROJECT_DIR_SETTING]).resolve()
    here = (cwd or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "azure.yaml").is_file():
            return directory
    return here


def _env_name(root: Path, environ: Mapping[str, str]) -> tuple[str, bool] | None:
    """The azd environment to read and whether it was asked for by name (``AZURE_ENV_NAME``)."""
    if environ.get(AZD_ENV_NAME):
        return environ[AZD_ENV_NAME], True
    config = root / ".azure" / "config.json"
    if not config.is_file():
        return None
    try:
        document = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsFileError(f"{config}: cannot be read as JSON ({exc})") from None
    name = document.get("defaultEnvironment") if isinstance(document, dict) else None
    if not name:
        return None
    if not isinstance(name, str):
        raise SettingsFileError(f"{config}: defaultEnvironment must be an environment name")
    return name, False


def read_azd_environment(root: Path, environ: Mapping[str, str] | None = None) -> AzdEnvironment | None:
    """The checkout's azd environment, or None when it has none (no ``.azure`` directory, no default)."""
    environ = os.environ if environ is None else environ
    if not (root / ".azure").is_dir():
        return None
    chosen = _env_name(root, environ)
    if chosen is None:
        return None
    name, by_name = chosen
    where = f"{AZD_ENV_NAME}={name}" if by_name else f"{root / '.azure' / 'config.json'} (defaultEnvironment)"
    if not _ENV_NAME.match(name):
        raise SettingsFileError(f"{where}: {name!r} is not an azd environment name")
    path = root / ".azure" / name / ".env"
    if not path.is_file():
        if by_name:
            raise SettingsFileError(f"{where}: there is no {path} (`azd env list` shows the environments)")
        log.warning("%s names the azd environment %s, but %s does not exist; not reading it", where, name, path)
        return None
    from dotenv import dotenv_values

    try:
        # azd writes the file with godotenv (KEY="value", quotes escaped); values are taken as written.
        raw = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsFileError(f"{path}: cannot be read ({exc})") from None
    return AzdEnvironment(name, path, {key: value for key, value in raw.items() if value})


def _warn_shadowed(local: dict[str, str], azd: AzdEnvironment, from_azd: dict[str, str]) -> None:
    """The local twin's settings file winning over a deployment is a likely accident: say so, once."""
    shadowed = [key for key, value in from_azd.items() if key in local and local[key] != value]
    if STORAGE_ACCOUNT_SETTING in from_azd and STORAGE_SETTING in local:
        # A connection string wins over the identity-based settings (as in the Functions host).
        shadowed.append(f"{STORAGE_SETTING} (not the storage account {from_azd[STORAGE_ACCOUNT_SETTING]})")
    if shadowed:
        log.warning(
            "%s overrides the azd environment %s for %s; remove those from it to work on the deployment",
            LOCAL_SETTINGS_FILE,
            azd.name,
            ", ".join(shadowed),
        )


def gather(*, root: Path | None = None, environ: Mapping[str, str] | None = None, azd: bool = True) -> Sources:
    """The values every setting is read from: process environment > local.settings.json > azd environment."""
    environ = os.environ if environ is None else environ
    root = root or project_dir(environ)
    local = read_local_settings(root / LOCAL_SETTINGS_FILE)
    azd_env = read_azd_environment(root, environ) if azd else None
    from_azd = azd_env.settings() if azd_env else {}
    layers = [
        ("environment", {key: value for key, value in environ.items() if value}),
        (str(root / LOCAL_SETTINGS_FILE), local),
        (f"azd environment {azd_env.name}" if azd_env else "", from_azd),
    ]
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for origin, layer in reversed(layers):
        for key, value in layer.items():
            values[key] = value
            origins[key] = origin
    if azd_env is not None:
        _warn_shadowed(local, azd_env, from_azd)
    return Sources(values, origins, azd_env)


def install_deployment() -> Settings:
    """Read every setting (the azd environment included) and make them the process's runtime."""
    settings = gather().settings()
    runtime.install(runtime.bootstrap(settings))
    return settings


def local_twin() -> Settings:
    """The settings of the local twin's commands (no azd environment), local.settings.json's values also put
    into this process's environment, as the local host does: the twin's processes started from here (the
    host, endpoint servers) inherit their settings that way."""
    sources = gather(azd=False)
    for key, value in sources.values.items():
        if key not in os.environ:
            os.environ[key] = value
    if any(key not in os.environ for key in LOCAL_TWIN_DEFAULTS):
        for key, value in LOCAL_TWIN_DEFAULTS.items():  # below the environment and local.settings.json
            os.environ.setdefault(key, value)
        sources = gather(azd=False)
    return sources.settings()


# What the local twin sets unless told otherwise: its notification receivers listen on this machine
# (loopback), which the app refuses by default (shared/notify_http.py).
LOCAL_TWIN_DEFAULTS = {"AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES": "true"}


def storage_hint(settings: Settings) -> str:
    """What to check when the ledger or a container cannot be reached, for the storage these settings name."""
    try:
        connection = settings.storage()
    except ValueError:
        return "check the storage settings (AzureWebJobsStorage)"
    if not connection.uses_identity:
        return "is it running? (`autopilot up`)"
    account = connection.account_name or connection.blob_service_uri
    return (
        f"are you signed in (`az login` or `azd auth login`) with the blob and table data roles on {account}? "
        "(docs/running-on-azure.md, Prerequisites)"
    )
