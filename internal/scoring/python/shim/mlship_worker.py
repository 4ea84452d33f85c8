"""mlship scoring worker: runs an Azure ML entry script (init() once, run() per request).

Speaks length-prefixed frames over fd 3 (a socketpair from the Go replica), so print() in user
code goes to stdout, which the replica logs, and cannot corrupt the protocol.
Frame: 4-byte big-endian payload length, 1 byte kind, payload.
"""
import gc
import importlib.util
import inspect
import json
import os
import socket
import struct
import sys
import time
import traceback

_HDR = struct.Struct(">IB")

# Frame kinds, Go -> worker.
K_RUN = 0x52  # 'R' body is raw_data
K_HTTP = 0x48  # 'H' 4-byte meta length, meta JSON, body (for @rawhttp scripts)
# The same kinds in lower case ('r', 'h') ask the worker to poll for the next request after
# answering, instead of sleeping: the replica has a core to spare and the worker is its hot one.
K_POLL = 0x20
# Frame kinds, worker -> Go.
K_READY = 0x49  # 'I' init() returned; payload JSON info
K_INIT_ERR = 0x45  # 'E' init() raised; payload JSON {type,message,traceback}
K_JSON = 0x4A  # 'J' result JSON
K_RAW = 0x41  # 'A' AMLResponse: 4-byte meta length, meta JSON {status,headers,content_type}, body
K_RAISED = 0x58  # 'X' run() raised; payload JSON {type,message,traceback}
K_BAD_INPUT = 0x42  # 'B' input did not match the schema; payload message


class BadInput(Exception):
    """The request body does not match the script's input schema (answered 400)."""


def _send(sock, kind, payload):
    sock.sendall(_HDR.pack(len(payload), kind) + payload)


class _Reader:
    """Buffered frame reader over the protocol socket that polls briefly before sleeping.

    Waking a sleeping process costs tens of microseconds on virtual machines, more than a small
    model's run(); a worker that polls for spin_ns after each answer usually finds the next request
    already there and never sleeps while the replica is busy.
    """

    def __init__(self, sock, spin_ns):
        self.sock = sock
        self.spin_ns = spin_ns
        self.poll = False  # set per request by the replica (K_POLL)
        # Polls in a row that ended without a request (requests are sparse, or the replica shares
        # this core): after 3, only every 64th poll request is honoured.
        self.misses = 0
        self.frames = 0
        self.buf = bytearray()

    def _more(self):
        if self.poll and self.spin_ns > 0 and (self.misses < 3 or self.frames % 64 == 0):
            deadline = time.perf_counter_ns() + self.spin_ns
            recv, flags = self.sock.recv, socket.MSG_DONTWAIT
            while True:
                try:
                    data = recv(1 << 16, flags)
                    self.misses = 0
                    break
                except BlockingIOError:
                    if time.perf_counter_ns() > deadline:
                        self.misses += 1
                        data = self.sock.recv(1 << 16)
                        break
        else:
            data = self.sock.recv(1 << 16)
        if not data:
            return False
        self.buf += data
        return True

    def frame(self):
        """The next (kind, payload), or (None, None) at EOF."""
        self.frames += 1
        buf = self.buf
        while len(buf) < 5:
            if not self._more():
                return None, None
        n, kind = _HDR.unpack_from(buf)
        end = 5 + n
        if len(buf) >= end:
            payload = bytes(buf[5:end])
            del buf[:end]
            return kind, payload
        # A large body: receive the rest straight into one buffer instead of growing this one.
        payload = bytearray(n)
        have = len(buf) - 5
        payload[:have] = buf[5:]
        del buf[:]
        view = memoryview(payload)
        while have < n:
            got = self.sock.recv_into(view[have:])
            if not got:
                return None, None
            have += got
        view.release()
        return kind, bytes(payload)


def _error(e):
    return json.dumps({
        "type": type(e).__name__,
        "message": str(e) or repr(e),
        "traceback": traceback.format_exc(),
    }).encode()


def _json_default(o):
    # numpy and pandas values are common run() results; Azure users expect them to serialize.
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict(orient="records")
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)


def _load(entry):
    name = os.path.splitext(os.path.basename(entry))[0]
    spec = importlib.util.spec_from_file_location(name, entry)
    if spec is None:
        raise ImportError("cannot load entry script %s" % entry)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class _Schema:
    """The input parameters declared with @input_schema, applied before calling the user's run()."""

    def __init__(self, run):
        self.params = getattr(run, "__mlship_inputs__", None) or {}
        self.output = getattr(run, "__mlship_output__", None)
        self.inner = getattr(run, "__mlship_inner__", run)
        try:
            self.sig = inspect.signature(self.inner)
        except (TypeError, ValueError):
            self.sig = None

    def call(self, body):
        try:
            kwargs = json.loads(body)
        except ValueError as e:
            raise BadInput("request body is not valid JSON: %s" % e)
        if not isinstance(kwargs, dict):
            raise BadInput("request body must be a JSON object with keys %s" % sorted(self.params))
        for name, ptype in self.params.items():
            if name not in kwargs:
                if getattr(ptype, "_mlship_optional", False):
                    continue
                raise BadInput("missing input %r (expected keys: %s)" % (name, ", ".join(sorted(self.params))))
            try:
                kwargs[name] = ptype.deserialize_input(kwargs[name])
            except BadInput:
                raise
            except Exception as e:
                raise BadInput("input %r does not match its schema: %s" % (name, e))
        if self.sig is not None:
            try:
                self.sig.bind(**kwargs)
            except TypeError as e:
                raise BadInput("input keys do not match run()'s parameters: %s" % e)
        return self.inner(**kwargs)

    def swagger(self):
        info = {}
        if self.params:
            props, example = {}, {}
            for name, ptype in self.params.items():
                props[name] = ptype.input_to_swagger()
                if "example" in props[name]:
                    example[name] = props[name]["example"]
            info["input"] = {"type": "object", "properties": props, "example": example}
        if self.output is not None:
            info["output"] = self.output.input_to_swagger()
        return info


class _Request:
    """What a @rawhttp run() receives: the subset of flask.Request Azure scripts use."""

    def __init__(self, meta, body):
        from urllib.parse import parse_qs
        self.method = meta.get("method", "POST")
        self.path = meta.get("path", "/score")
        self.query_string = meta.get("query", "").encode()
        self.full_path = self.path + "?" + meta.get("query", "")
        self.url = self.full_path
        self.headers = {k: ", ".join(v) for k, v in (meta.get("headers") or {}).items()}
        self.args = {k: v[0] for k, v in parse_qs(meta.get("query", "")).items()}
        self.data = body
        self.content_type = self.headers.get("Content-Type", "")
        self.mimetype = self.content_type.split(";")[0].strip()

    def get_data(self, as_text=False, **_):
        return self.data.decode("utf-8", "replace") if as_text else self.data

    def get_json(self, force=False, silent=False, **_):
        try:
            return json.loads(self.data)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self):
        return self.get_json(silent=True)


def _answer(sock, out):
    aml = sys.modules.get("azureml.contrib.services.aml_response")
    if aml is not None and isinstance(out, aml.AMLResponse):
        body, meta = out._mlship_encode()
        m = json.dumps(meta).encode()
        _send(sock, K_RAW, struct.pack(">I", len(m)) + m + body)
        return
    _send(sock, K_JSON, json.dumps(out, default=_json_default).encode())


def main():
    sock = socket.socket(fileno=3)
    os.set_inheritable(3, False)  # processes the user's code starts must not hold the protocol socket
    rfile = _Reader(sock, int(os.environ.get("MLSHIP_WORKER_POLL_US", "0") or 0) * 1000)
    entry = os.environ["MLSHIP_ENTRY_SCRIPT"]
    source_dir = os.environ.get("MLSHIP_SOURCE_DIR") or os.path.dirname(entry)
    shim_dir = os.path.dirname(os.path.abspath(__file__))
    # The user's source dir wins; the shim's inference_schema/azureml stand in for the pip packages.
    sys.path[:] = [source_dir, shim_dir] + [p for p in sys.path if p not in (source_dir, shim_dir, "")]
    try:
        mod = _load(entry)
        init = getattr(mod, "init", None)
        if init is not None:
            init()
        run = getattr(mod, "run", None)
        if run is None:
            raise AttributeError("entry script %s defines no run(raw_data) function" % entry)
    except BaseException as e:
        sys.stderr.write(traceback.format_exc())
        sys.stderr.flush()
        _send(sock, K_INIT_ERR, _error(e))
        sys.exit(1)

    rawhttp = bool(getattr(run, "__mlship_rawhttp__", False))
    schema = _Schema(run) if hasattr(run, "__mlship_inputs__") or hasattr(run, "__mlship_output__") else None
    info = {"rawhttp": rawhttp, "pid": os.getpid()}
    if schema is not None:
        try:
            info["schema"] = schema.swagger()
        except Exception:
            sys.stderr.write("mlship: could not build swagger from the schema decorators:\n" + traceback.format_exc())
        if not schema.params:
            schema = None  # only an output schema: run() still takes the raw body
    # What init() loaded (the model, its libraries) lives as long as the worker: move it out of the
    # garbage collector's generations, so collections during requests scan only what requests make.
    gc.collect()
    gc.freeze()
    _send(sock, K_READY, json.dumps(info).encode())

    while True:
        kind, payload = rfile.frame()
        if kind is None:
            return  # the replica closed the socket: shut down
        rfile.poll = bool(kind & K_POLL)
        kind &= ~K_POLL
        try:
            if kind == K_HTTP:
                (mlen,) = struct.unpack(">I", payload[:4])
                meta = json.loads(payload[4:4 + mlen])
                out = run(_Request(meta, payload[4 + mlen:]))
            else:
                try:
                    body = payload.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise BadInput("request body is not UTF-8: %s" % e)
                out = schema.call(body) if schema is not None else run(body)
            _answer(sock, out)
        except BadInput as e:
            _send(sock, K_BAD_INPUT, str(e).encode())
        except Exception as e:
            sys.stderr.write(traceback.format_exc())
            sys.stderr.flush()
            _send(sock, K_RAISED, _error(e))


if __name__ == "__main__":
    main()
