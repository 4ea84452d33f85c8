"""mlship scoring worker: runs an Azure ML entry script (init() once, run() per request).

Requests come from fd 4, a SOCK_SEQPACKET socket every worker of the replica shares: each message
is taken by exactly one worker, the first free one, so a request never waits behind a busy worker
while another is free. A message is 8-byte id, 8-byte deadline (CLOCK_MONOTONIC ns, 0 for none),
1-byte kind, payload; a large payload comes instead as a memfd passed with the message.
Before running a request the worker records its id in its 8-byte slot of the memory fd 5 maps,
so the replica knows which request a worker that crashes or overruns its timeout was running; the
8 bytes after the slot are the worker's state word (see _Queue). Answers go back over fd 3 (this worker's own socketpair with the replica) as frames: 4-byte
big-endian payload length, 1 byte kind, payload; the payload of an answer starts with the id and
the 8-byte time run() took in nanoseconds (0 when it did not run).
print() in user code goes to stdout, which the replica logs, and cannot corrupt the protocol.
"""
import gc
import importlib.util
import inspect
import json
import mmap
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
K_FD = 0x80  # the payload is in the memfd passed with the message
# Frame kinds, worker -> Go.
K_READY = 0x49  # 'I' init() returned; payload JSON info
K_INIT_ERR = 0x45  # 'E' init() raised; payload JSON {type,message,traceback}
K_JSON = 0x4A  # 'J' result JSON
K_RAW = 0x41  # 'A' AMLResponse: 4-byte meta length, meta JSON {status,headers,content_type}, body
K_RAISED = 0x58  # 'X' run() raised; payload JSON {type,message,traceback}
K_BAD_INPUT = 0x42  # 'B' input did not match the schema; payload message
K_EXPIRED = 0x54  # 'T' the request's deadline had passed when the worker took it: not run

_MSG = struct.Struct(">QQB")  # id, deadline, kind
_ANS = struct.Struct(">QQ")  # every answer starts with the request id and run()'s time in nanoseconds
_INLINE_MAX = 16 << 10  # inlineMax in pool.go: the replica passes larger payloads as a memfd


class BadInput(Exception):
    """The request body does not match the script's input schema (answered 400)."""


def _send(sock, kind, payload):
    sock.sendall(_HDR.pack(len(payload), kind) + payload)


# A worker's state word, next to its slot, tells the replica whether to wake it for a new request.
ST_BUSY = 0  # running a request (it looks at the queue again before it sleeps)
ST_SPIN = 1  # polling the queue
ST_SLEEP = 2  # asleep on fd 3; the replica writes a byte there to wake it
# 3 is the replica's WAKING (it sent the byte), 4 its STARTING (before the worker's loop runs).


class _Queue:
    """Takes requests from the socket all workers share.

    An idle worker does not sleep in the shared queue: the kernel would wake the one that slept
    longest, whose caches are cold. It sleeps on its own socket instead, with its state word set
    to ST_SLEEP, and the replica wakes the most recently used sleeper when a request needs one.
    After a lone request (the kind's K_POLL bit) the worker polls the queue for spin_ns first:
    waking a sleeping process costs tens of microseconds on virtual machines, more than a small
    model's run().
    """

    def __init__(self, sock, wake, state, index, workers, spin_ns):
        self.sock = sock
        self.wake = wake
        self.state = state
        self.index = index
        # The state words of the other workers: one polling worker is enough (two would take both
        # cores from the replica and the clients).
        self.others = [2 * i + 1 for i in range(workers) if 2 * i + 1 != index]
        self.spin_ns = spin_ns
        self.poll = False  # set per request by the replica (K_POLL)
        # Polls in a row that ended without a request (requests are sparse, or the replica shares
        # this core): after 3, only every 8th poll request is honoured.
        self.misses = 0
        self.taken = 0
        self.buf = bytearray(_MSG.size + _INLINE_MAX + 1)
        self.view = memoryview(self.buf)
        self.anc = socket.CMSG_SPACE(4)

    def _try(self):
        """A message from the queue without waiting: (n, ancillary, flags), or None if it is empty."""
        try:
            return self.sock.recvmsg_into([self.buf], self.anc, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None

    def _next(self):
        got = self._try()
        if got is not None:
            return got
        self.taken += 1
        state = self.state
        if (self.poll and self.spin_ns > 0 and (self.misses < 3 or self.taken % 8 == 0)
                and not any(state[i] == ST_SPIN for i in self.others)):
            self.state[self.index] = ST_SPIN
            deadline = time.perf_counter_ns() + self.spin_ns
            while True:
                got = self._try()
                if got is not None:
                    self.misses = 0
                    return got
                if time.perf_counter_ns() > deadline:
                    self.misses += 1
                    break
        try:
            # Wakes sent while this worker was awake (it took the request itself) are stale: one
            # left in the socket would wake it at once, and it could take a request the replica
            # woke the most recently used worker for.
            while self.wake.recv(64, socket.MSG_DONTWAIT):
                pass
        except BlockingIOError:
            pass
        while True:
            # Say "asleep" before the last look: a request queued after that look finds the state
            # word set, and the replica wakes this worker.
            self.state[self.index] = ST_SLEEP
            got = self._try()
            if got is not None:
                return got
            if not self.wake.recv(64):
                return 0, [], 0  # the replica is gone
            self.state[self.index] = ST_SPIN

    def take(self):
        """The next (id, deadline, kind, payload), or None when the replica closed the queue."""
        n, anc, mflags, _ = self._next()
        self.state[self.index] = ST_BUSY
        fd = -1
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fd = int.from_bytes(data[:4], sys.byteorder)
        if n == 0 and fd < 0:
            return None
        if n < _MSG.size or mflags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise RuntimeError("malformed request message from the replica (%d bytes, flags %#x)" % (n, mflags))
        rid, deadline, kind = _MSG.unpack_from(self.buf)
        if fd >= 0:
            try:
                size = os.fstat(fd).st_size
                parts, have = [], 0
                while have < size:
                    part = os.pread(fd, size - have, have)
                    if not part:
                        break
                    parts.append(part)
                    have += len(part)
                payload = b"".join(parts)
            finally:
                os.close(fd)
        else:
            payload = bytes(self.view[_MSG.size:n])
        return rid, deadline, kind, payload


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


# json.dumps(out, default=...) builds an encoder per call; one made here saves about 1 µs a request.
_ENCODER = json.JSONEncoder(default=_json_default)


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


def _answer(sock, head, out):
    aml = sys.modules.get("azureml.contrib.services.aml_response")
    if aml is not None and isinstance(out, aml.AMLResponse):
        body, meta = out._mlship_encode()
        m = json.dumps(meta).encode()
        _send(sock, K_RAW, head + struct.pack(">I", len(m)) + m + body)
        return
    _send(sock, K_JSON, head + _ENCODER.encode(out).encode())


def main():
    sock = socket.socket(fileno=3)
    slots = memoryview(mmap.mmap(5, 0)).cast("Q")
    slot = 2 * int(os.environ["MLSHIP_WORKER_SLOT"])  # the request id; the state word follows it
    queue = _Queue(socket.socket(fileno=4), sock, slots, slot + 1, int(os.environ["MLSHIP_WORKERS"]),
                   int(os.environ.get("MLSHIP_WORKER_POLL_US", "0") or 0) * 1000)
    os.close(5)  # the mapping stays
    for fd in (3, 4):
        os.set_inheritable(fd, False)  # processes the user's code starts must not hold the protocol sockets
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

    monotonic_ns, perf_ns = time.monotonic_ns, time.perf_counter_ns
    while True:
        msg = queue.take()
        if msg is None:
            return  # the replica closed the queue: shut down
        rid, deadline, kind, payload = msg
        slots[slot] = rid  # before anything else: the replica reads it if this worker dies
        queue.poll = bool(kind & K_POLL)
        kind &= ~(K_POLL | K_FD)
        if deadline and monotonic_ns() >= deadline:
            _send(sock, K_EXPIRED, _ANS.pack(rid, 0))  # its caller has been answered 504; do not run it
            continue
        t0 = perf_ns()
        try:
            if kind == K_HTTP:
                (mlen,) = struct.unpack(">I", payload[:4])
                meta = json.loads(payload[4:4 + mlen])
                req = _Request(meta, payload[4 + mlen:])
                t0 = perf_ns()
                out = run(req)
            else:
                try:
                    body = payload.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise BadInput("request body is not UTF-8: %s" % e)
                t0 = perf_ns()
                out = schema.call(body) if schema is not None else run(body)
            _answer(sock, _ANS.pack(rid, perf_ns() - t0), out)
        except BadInput as e:
            _send(sock, K_BAD_INPUT, _ANS.pack(rid, perf_ns() - t0) + str(e).encode())
        except Exception as e:
            took = perf_ns() - t0
            sys.stderr.write(traceback.format_exc())
            sys.stderr.flush()
            _send(sock, K_RAISED, _ANS.pack(rid, took) + _error(e))

if __name__ == "__main__":
    main()
