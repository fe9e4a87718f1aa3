"""Record the JSON request bodies that an official ``tinker`` SDK sends, endpoint by endpoint.

Run it with the official package's own Python; it imports nothing of tinkex::

    TINKER_TELEMETRY=0 /path/to/t038/bin/python tools/capture_official_bodies.py > tests/tinkex/testing/data/official-0.38.0-bodies.json
    TINKER_TELEMETRY=0 /path/to/t016/bin/python tools/capture_official_bodies.py > tests/tinkex/testing/data/official-0.16.1-bodies.json

A small recording server on 127.0.0.1 answers just enough for each public call to send its request (canned
future results, the 0.38 ``client/config`` handshake with the flags that make the SDK use ``join_sampling_session``,
the server-side custom loss and ``cancel_future``); results that 0.38 wants as protobuf are answered with a failure,
because only the request bodies matter here. Ids are placeholders (``SESSION_ID``, ``SESSION_ID:train:0``,
``REQUEST_<n>``) that a test substitutes with the ids its own server issued.

The output lists every request in the order sent: endpoint name (as in tinkex's manifest), method, path, and the
body as JSON (``null`` without one; protobuf bodies are recorded as their size only).
"""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import os
import pickle
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import tinker
from tinker import types

SESSION = "SESSION_ID"
BASE_MODEL = "Qwen/Qwen3-8B"
API_KEY = "tml-capture-key-0123456789"
HANGING_TOKEN = 999
"""A sample whose prompt holds this token never completes, so that abandoning it sends ``cancel_future``."""
V038 = tuple(int(p) for p in tinker.__version__.split(".")[:2]) >= (0, 38)

# (endpoint name in tinkex's manifest, method, path regex); the first match names a request.
ROUTES: list[tuple[str, str, str]] = [
    ("client_config", "POST", r"/api/v1/client/config"),
    ("client_dynamic_config", "POST", r"/api/v1/client/dynamic_config"),
    ("create_session", "POST", r"/api/v1/create_session"),
    ("session_heartbeat", "POST", r"/api/v1/session_heartbeat"),
    ("create_sampling_session", "POST", r"/api/v1/create_sampling_session"),
    ("join_sampling_session", "POST", r"/api/v1/join_sampling_session"),
    ("get_server_capabilities", "GET", r"/api/v1/get_server_capabilities"),
    ("telemetry", "POST", r"/api/v1/telemetry"),
    ("create_custom_loss", "POST", r"/api/v1/create_custom_loss"),
    ("create_model", "POST", r"/api/v1/create_model"),
    ("get_info", "POST", r"/api/v1/get_info"),
    ("forward_backward", "POST", r"/api/v1/forward_backward"),
    ("forward", "POST", r"/api/v1/forward"),
    ("optim_step", "POST", r"/api/v1/optim_step"),
    ("save_weights", "POST", r"/api/v1/save_weights"),
    ("load_weights", "POST", r"/api/v1/load_weights"),
    ("save_weights_for_sampler", "POST", r"/api/v1/save_weights_for_sampler"),
    ("save_weights_external", "POST", r"/api/v1/save_weights_external"),
    ("copy_weights", "POST", r"/api/v1/copy_weights"),
    ("weights_info", "POST", r"/api/v1/weights_info"),
    ("asample", "POST", r"/api/v1/asample"),
    ("retrieve_future", "POST", r"/api/v1/retrieve_future"),
    ("cancel_future", "POST", r"/api/v1/cancel_future"),
    ("finish_session", "POST", r"/api/v1/sessions/[^/]+/finish"),
    ("search_sessions", "POST", r"/api/v1/sessions/search"),
    ("assign_session_project", "PUT", r"/api/v1/sessions/[^/]+/project"),
    ("export_session_trace", "GET", r"/api/v1/sessions/[^/]+/trace_export"),
    ("get_session", "GET", r"/api/v1/sessions/[^/]+"),
    ("list_sessions", "GET", r"/api/v1/sessions"),
    ("get_sampler", "GET", r"/api/v1/samplers/[^/]+"),
    ("external_weights_urls", "GET", r"/api/v1/training_runs/[^/]+/checkpoints/.+/external_weights_urls"),
    ("publish_checkpoint", "POST", r"/api/v1/training_runs/[^/]+/checkpoints/.+/publish"),
    ("unpublish_checkpoint", "DELETE", r"/api/v1/training_runs/[^/]+/checkpoints/.+/publish"),
    ("set_checkpoint_ttl", "PUT", r"/api/v1/training_runs/[^/]+/checkpoints/.+/ttl"),
    ("delete_checkpoint", "DELETE", r"/api/v1/training_runs/[^/]+/checkpoints/.+"),
    ("list_checkpoints", "GET", r"/api/v1/training_runs/[^/]+/checkpoints"),
    ("get_training_run", "GET", r"/api/v1/training_runs/[^/]+"),
    ("list_training_runs", "GET", r"/api/v1/training_runs"),
    ("list_user_checkpoints", "GET", r"/api/v1/checkpoints"),
    ("whoami", "GET", r"/api/v1/auth/apikey/me"),
]


def endpoint_name(method: str, path: str) -> str:
    for name, route_method, pattern in ROUTES:
        if route_method == method and re.fullmatch(pattern, path):
            return name
    return f"unknown {method} {path}"


class Recorder:
    """The recording server's state: what was received, and the canned result of every future it issued."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.results: dict[str, tuple[int, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def record(self, name: str, method: str, path: str, content_type: str, raw: bytes) -> Any:
        body: Any = None
        if raw and "json" in content_type:
            body = json.loads(raw)
        elif raw:
            body = {"<non-json body>": content_type, "bytes": len(raw)}
        if name != "telemetry":
            with self._lock:
                self.requests.append({"endpoint": name, "method": method, "path": path, "body": body})
        return body

    def future(self, result: Any, status: int = 200, **extra: Any) -> dict[str, Any]:
        request_id = f"REQUEST_{next(self._ids)}"
        self.results[request_id] = (status, result)
        return {"request_id": request_id, **extra}


def _sample_result(body: dict[str, Any]) -> dict[str, Any]:
    tokens = [7] * int(body.get("sampling_params", {}).get("max_tokens") or 1)
    sequence = {"stop_reason": "length", "tokens": tokens, "logprobs": [-0.5] * len(tokens)}
    result: dict[str, Any] = {"sequences": [sequence] * int(body["num_samples"])}
    if body.get("prompt_logprobs"):
        length = sum(len(chunk.get("tokens", [])) for chunk in body["prompt"]["chunks"])
        result["prompt_logprobs"] = [None] + [-1.0] * (length - 1)
    return result


def answer(recorder: Recorder, name: str, body: Any, headers: dict[str, str], path: str) -> tuple[int, Any]:
    """The canned reply to one request."""
    failure = {"error": "the capture server does not produce this result", "category": "user"}
    if name == "client_config":
        return 200, {
            "use_pyqwest_transport": False,
            "sample_join_sampling_session": True,
            "custom_loss_server_side": True,
        }
    if name == "client_dynamic_config":
        return 200, {"sample_cancel_enabled": True, "refresh_interval_sec": 300}
    if name == "create_session":
        return 200, {"session_id": SESSION}
    if name in ("session_heartbeat", "cancel_future", "finish_session", "assign_session_project"):
        return 200, {}
    if name == "create_sampling_session":
        return 200, {"sampling_session_id": f"{SESSION}:sample:{body['sampling_session_seq_id']}"}
    if name == "join_sampling_session":
        return 200, {"client_counter": 1}
    if name == "get_server_capabilities":
        return 200, {"supported_models": [{"model_name": BASE_MODEL, "max_context_length": 32768}]}
    if name == "create_model":
        model_id = f"{SESSION}:train:{body['model_seq_id']}"
        return 200, recorder.future({"model_id": model_id}, model_id=model_id)
    if name == "get_info":
        data = {"arch": "fake", "model_name": BASE_MODEL, "tokenizer_id": BASE_MODEL}
        return 200, {"model_data": data, "model_id": body["model_id"], "is_lora": True, "lora_rank": 8}
    if name == "create_custom_loss":
        return 200, recorder.future({"loss_id": f"loss-{body['custom_loss_seq_id']}"})
    if name in ("forward_backward", "forward"):
        if "json" not in headers.get("content-type", ""):
            return 200, recorder.future(failure)
        output = {"logprobs": {"data": [-0.5], "dtype": "float32", "shape": [1]}}
        return 200, recorder.future({"loss_fn_output_type": "ArrayRecord", "loss_fn_outputs": [output],
                                     "metrics": {"loss:sum": 0.5}})
    if name == "optim_step":
        return 200, recorder.future({"metrics": {}})
    if name == "save_weights":
        return 200, recorder.future({"path": f"tinker://{body['model_id']}/weights/{body['path']}"})
    if name == "load_weights":
        model_id = body.get("model_id") or f"{body['session_id']}:train:{body['model_seq_id']}"
        return 200, recorder.future({"path": body["path"]}, model_id=model_id)
    if name == "save_weights_for_sampler":
        if body.get("path"):
            return 200, recorder.future({"path": f"tinker://{body['model_id']}/sampler_weights/{body['path']}"})
        sampler_id = f"{SESSION}:sample:{body['sampling_session_seq_id']}"
        return 200, recorder.future({"path": None, "sampling_session_id": sampler_id})
    if name == "save_weights_external":
        return 200, recorder.future({"path": f"tinker://{body['model_id']}/external_weights/{body['path']}"})
    if name == "copy_weights":
        return 200, {"tinker_path": f"tinker://{SESSION}:train:9/weights/copied"}
    if name == "weights_info":
        return 200, {"base_model": BASE_MODEL, "is_lora": True, "lora_rank": 8}
    if name == "asample":
        prompt_tokens = [t for chunk in body["prompt"]["chunks"] for t in chunk.get("tokens", [])]
        ids = [f"SEQUENCE_{i}" for i in range(int(body["num_samples"]))]
        if HANGING_TOKEN in prompt_tokens:
            return 200, recorder.future(None, status=0, sample_sequence_ids=ids)
        result = failure if "x-protobuf" in headers.get("accept", "") or V038 else _sample_result(body)
        return 200, recorder.future(result, sample_sequence_ids=ids)
    if name == "retrieve_future":
        status, result = recorder.results[body["request_id"]]
        if status == 0:  # never completes
            time.sleep(0.2)
            return 200, {"type": "try_again", "request_id": body["request_id"], "queue_state": "active"}
        if V038 and headers.get("x-tinker-request-type") in ("Sample", "ForwardBackward"):
            return 200, failure
        return status, result
    if name == "get_sampler":
        return 200, {"sampler_id": path.rsplit("/", 1)[-1], "base_model": BASE_MODEL}
    if name == "list_checkpoints":
        return 200, {"checkpoints": []}
    if name == "set_checkpoint_ttl":
        return 200, {}
    if name == "search_sessions":
        return 200, {"sessions": []}
    if name == "export_session_trace":
        return 200, {"status": "ready", "url": "http://127.0.0.1/trace.json"}
    if name == "external_weights_urls":
        return 200, {"urls": {"model.safetensors": "http://127.0.0.1/f"}, "expires": "2030-01-01T00:00:00Z"}
    if name == "telemetry":
        return 200, {"status": "accepted"}
    return 404, {"detail": f"the capture server has no answer for {name}"}


def serve(recorder: Recorder) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            path = self.path.split("?", 1)[0]
            name = endpoint_name(self.command, path)
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = recorder.record(name, self.command, path, headers.get("content-type", ""), raw)
            status, reply = answer(recorder, name, body, headers, path)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except BrokenPipeError:  # the SDK gave up on a held poll (the cancelled sample)
                pass

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def attempt(label: str, call: Callable[[], Any]) -> Any:
    """Run one public call; a failure is reported on stderr (the request was sent and recorded all the same)."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the capture goes on; only the requests matter
        print(f"{label}: {type(exc).__name__}: {str(exc)[:160]}", file=sys.stderr)
        return None


def resolved(value: Any) -> Any:
    """0.38's creation methods return futures of clients; 0.16's return the clients."""
    return value.result() if type(value).__name__.startswith("Backcompat") else value


def run_calls(base_url: str) -> None:
    service = tinker.ServiceClient(
        user_metadata={"purpose": "capture"}, project_id="proj-a", base_url=base_url, api_key=API_KEY,
        **({"display_name": "capture run"} if V038 else {}),
    )
    attempt("get_server_capabilities", service.get_server_capabilities)
    training = resolved(service.create_lora_training_client(BASE_MODEL, rank=8))
    model_id = training.model_id
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": [1.0, 1.0, 1.0, 1.0]},
    )
    attempt("forward_backward", lambda: training.forward_backward([datum], "cross_entropy").result())
    attempt("optim_step", lambda: training.optim_step(types.AdamParams(learning_rate=1e-4)).result())
    attempt("save_state", lambda: training.save_state("ckpt-1").result())
    if V038:
        attempt("save_state overwrite", lambda: training.save_state(
            "ckpt-1", ttl_seconds=7200, overwrite=True, user_metadata={"stage": "warmup"}).result())
    weights = f"tinker://{model_id}/weights/ckpt-1"
    attempt("load_state", lambda: training.load_state(weights).result())
    attempt("load_state_with_optimizer", lambda: training.load_state_with_optimizer(weights).result())
    attempt("save_weights_for_sampler", lambda: training.save_weights_for_sampler("s1").result())
    if V038:
        attempt("save_weights_external", lambda: training.save_weights_external("ext-1").result())
    attempt("save_weights_and_get_sampling_client", training.save_weights_and_get_sampling_client)
    sampler = resolved(service.create_sampling_client(model_path=f"tinker://{model_id}/sampler_weights/s1"))
    prompt = types.ModelInput.from_ints([5, 6, 7])
    params = types.SamplingParams(max_tokens=4, temperature=0.7)
    attempt("sample", lambda: sampler.sample(prompt, 2, params).result())
    attempt("compute_logprobs", lambda: sampler.compute_logprobs(prompt).result())
    if V038:
        hanging = sampler.sample(types.ModelInput.from_ints([HANGING_TOKEN]), 1, params)
        time.sleep(0.5)
        hanging.future().cancel()  # abandoning a sample tells the server to stop it (cancel_future)
        time.sleep(1.0)
        clone = pickle.loads(pickle.dumps(sampler))  # an unpickled client joins the sampling session
        attempt("clone sample", lambda: clone.sample(prompt, 1, params).result())
    rest = service.create_rest_client()
    attempt("weights_info", lambda: rest.get_weights_info_by_tinker_path(weights).result())
    attempt("list_checkpoints", lambda: rest.list_checkpoints(model_id).result())
    attempt("set_ttl", lambda: rest.set_checkpoint_ttl_from_tinker_path(weights, 86400).result())
    if V038:
        attempt("copy_weights", lambda: rest.copy_weights(weights, "proj-b", ttl_seconds=7200).result())
        attempt("copy_weights into session", lambda: service.copy_weights(weights).result())
        external = f"tinker://{model_id}/external_weights/ext-1"
        attempt("external_weights_urls", lambda: rest.get_external_weights_urls(external).result())
        search = types.SessionSearchRequest(
            display_name="capture", user_metadata={"purpose": "capture"}, owner=types.AccessibleSearchOwner(),
            statuses=[types.ActiveSessionStatusQuery(), types.ClientFinishedSessionStatusQuery(reasons=["success"])],
            project_ids=["proj-a"], limit=10,
        )
        attempt("search_sessions", lambda: rest.search_sessions(search).result())
        attempt("assign_session_project", lambda: rest.assign_session_project(SESSION, "proj-b").result())
        attempt("export_session_trace", lambda: rest.export_session_trace(SESSION).result())
        attempt("create_training_client_from_state",
                lambda: resolved(service.create_training_client_from_state(weights)))
        holder = service.holder
        graph = types.CustomLossGraph(nodes=[
            types.CustomLossNode(op="placeholder", name="logprobs", target="logprobs"),
            types.CustomLossNode(op="call_function", name="neg", target="operator.neg", args=[{"ref": "logprobs"}]),
            types.CustomLossNode(op="output", name="output", target="output", args=[{"ref": "neg"}]),
        ])
        inputs = [types.CustomLossInput(name="logprobs", rank=1)]

        async def create_loss() -> Any:
            return await holder._create_custom_loss("neg_logprobs", inputs, graph)

        attempt("create_custom_loss", lambda: holder.run_coroutine_threadsafe(create_loss()).result())
    time.sleep(10.5)  # one heartbeat
    if V038:
        attempt("close", lambda: service.close("success", detail="capture done").result())


def main() -> None:
    os.environ.setdefault("TINKER_TELEMETRY", "0")
    recorder = Recorder()
    server = serve(recorder)
    run_calls(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    output = {
        "sdk": f"tinker {tinker.__version__}",
        "captured_with": "tools/capture_official_bodies.py",
        "placeholders": {"session": SESSION, "request": "REQUEST_<n>", "sequence": "SEQUENCE_<n>"},
        "requests": recorder.requests,
    }
    json.dump(output, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
