"""A stand-in ``az`` for the hook tests: ARM as a dict of resources in a JSON state file, plus the few other
commands the hooks run. Each call is appended to a log (argv, and the body file of ``--body @file`` with its
mode), and failures can be injected per command. It refuses what it does not know, so a new ``az`` call in the
hooks fails the tests until this knows it too.

State (``FAKE_AZ_STATE``):
- ``resources``: ARM id -> resource. ``az rest`` GET returns one, or the list of a collection (its direct
  children, maybe none; ``page_size`` > 0 pages it with ``nextLink``); PUT stores; DELETE removes; POST
  ``.../cancel`` cancels a job. A missing resource is a 404, as ARM answers it.
- ``provisioning``: event subscription name -> the provisioningState each GET after its PUT reports, in turn.
- ``keys``: the answers of ``functionapp keys list``, in turn (the last one repeats).
- ``fail``: a part of a call's signature (``functionapp keys list``, ``rest delete /subscriptions/...``) -> the
  stderr of its next calls, one per call, exit 1.
- ``apps``: the Function Apps that exist (``functionapp stop``); ``provider``: Microsoft.EventGrid's registrationState.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ARM = "https://management.azure.com"


def _load() -> dict[str, Any]:
    state: dict[str, Any] = json.loads(Path(os.environ["FAKE_AZ_STATE"]).read_text(encoding="utf-8"))
    return state


def _save(state: dict[str, Any]) -> None:
    Path(os.environ["FAKE_AZ_STATE"]).write_text(json.dumps(state), encoding="utf-8")


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _not_found(what: str) -> int:
    body = {"error": {"code": "ResourceNotFound", "message": f"The Resource '{what}' was not found."}}
    print(f"ERROR: Not Found({json.dumps(body)})", file=sys.stderr)
    return 1


def _is_collection(path: str) -> bool:
    """``.../providers/<namespace>/<type>/<name>/<type>``: types and names alternate, so an odd count is a list."""
    after = path.rsplit("/providers/", 1)[-1].split("/")[1:]
    return len(after) % 2 == 1


def _rest(args: list[str], state: dict[str, Any], call: dict[str, Any]) -> int:
    method = (_option(args, "--method") or "get").lower()
    url = _option(args, "--url") or ""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    key = path.lower()
    resources: dict[str, Any] = state.setdefault("resources", {})
    found = next((k for k in resources if k.lower() == key), None)
    if method == "put":
        body = call.get("body") or {}
        name = path.rsplit("/", 1)[-1]
        resource = {**body, "id": path, "name": name}
        if "/eventsubscriptions/" in key:
            states = state.setdefault("provisioning", {}).get(name) or ["Succeeded"]
            resource.setdefault("properties", {})["provisioningState"] = "Creating" if len(states) > 1 else states[0]
        resources[found or path] = resource
        print(json.dumps(resource))
        return 0
    if method == "delete":
        if found is None:
            return _not_found(path)
        del resources[found]
        return 0
    if method == "post" and key.endswith("/cancel"):
        job = next((k for k in resources if k.lower() == key.removesuffix("/cancel")), None)
        if job is None:
            return _not_found(path)
        resources[job].setdefault("properties", {})["status"] = "CancelRequested"
        return 0
    if method != "get":
        print(f"fake az: no {method.upper()} {path}", file=sys.stderr)
        return 2
    if found is not None:
        resource = resources[found]
        name = path.rsplit("/", 1)[-1]
        states = state.setdefault("provisioning", {}).get(name)
        if "/eventsubscriptions/" in key and states:
            resource.setdefault("properties", {})["provisioningState"] = states.pop(0)
        print(json.dumps(resource))
        return 0
    if not _is_collection(path):
        return _not_found(path)
    children = [r for k, r in resources.items() if k.lower().rsplit("/", 1)[0] == key]
    size = int(state.get("page_size") or 0)
    start = int((parse_qs(parts.query).get("$skipToken") or ["0"])[0])
    page: dict[str, Any] = {"value": children[start : start + size] if size else children}
    if size and start + size < len(children):
        query = "&".join(q for q in parts.query.split("&") if not q.startswith("$skipToken"))
        page["nextLink"] = f"{ARM}{path}?{query}&$skipToken={start + size}"
    print(json.dumps(page))
    return 0


def main(args: list[str]) -> int:
    call: dict[str, Any] = {"argv": args}
    if "--body" in args:
        body_file = Path(args[args.index("--body") + 1][1:])
        call["body"] = json.loads(body_file.read_text(encoding="utf-8"))
        call["body_mode"] = oct(body_file.stat().st_mode & 0o777)
    with open(os.environ["FAKE_AZ_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(call) + "\n")
    state = _load()
    try:
        signature = " ".join(a for a in args[:3] if not a.startswith("-"))
        if args[0] == "rest":
            signature = (
                f"rest {(_option(args, '--method') or 'get').lower()} {urlsplit(_option(args, '--url') or '').path}"
            )
        for part, failures in (state.get("fail") or {}).items():
            if part in signature and failures:
                print(f"ERROR: {failures.pop(0)}", file=sys.stderr)
                return 1
        if args[0] == "rest":
            return _rest(args, state, call)
        if args[:3] == ["functionapp", "keys", "list"]:
            answers = state.get("keys") or [{}]
            print(json.dumps(answers.pop(0) if len(answers) > 1 else answers[0]))
            return 0
        if args[:2] == ["functionapp", "stop"]:
            if _option(args, "-n") not in (state.get("apps") or []):
                return _not_found(str(_option(args, "-n")))
            return 0
        if args[:2] == ["provider", "show"]:
            print(json.dumps(state.get("provider", "Registered")))
            return 0
        print(f"fake az: unknown command {args}", file=sys.stderr)
        return 2
    finally:
        _save(state)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
