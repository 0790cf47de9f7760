"""A strict stand-in for a single KurrentDB node, speaking KurrentDB's published gRPC API.

No KurrentDB server can be installed on the machines that run ionroller's tests, so the
KurrentDB backend's suites run against this instead (and against a real server when
IONROLLER_KURRENTDB_URL is set). It serves exactly the calls the `kurrentdb` Rust client makes
for the backend, compiled from the `.proto` files that client ships (so the wire format is
the client's own), with the semantics KurrentDB documents:

- ServerFeatures.GetSupportedMethods (answered without credentials, as the client asks it)
  and Gossip.Read (this node, the leader), for `kurrentdb://` and `kurrentdb+discover://`;
- Streams.Append: the options message first, the expected revision always set, every event
  with an id and the `type` and `content-type` metadata; NoStream, StreamExists, Any and an
  exact revision checked exactly; a wrong expected version answered in the message (not as a
  gRPC error) with both the current and the legacy fields; a repeated append of the same event
  ids at the same place answered with the original result and nothing written; appends over
  the server's maximum append size refused;
- Streams.Read: stream reads (inclusive, forwards or backwards, `stream_not_found` for a
  stream with no events, `last_stream_position` at the end under compatibility 1; a
  `$maxCount` in the stream's metadata, written as a `$metadata` event to `$$stream`, hides
  all but the newest events), `$all`
  reads (forwards from a position inclusive, backwards exclusive, only at record boundaries)
  with server-side stream-name or event-type filters (regex or prefixes), and `$all`
  subscriptions: confirmation, catch-up strictly after the position, a checkpoint every
  `max × checkpointIntervalMultiplier` events considered and one before `caught_up`, then
  live events; a subscription never ends on its own;
- every request's `authorization` must be `Basic` with the node's user and password (the
  node runs as a secure server would, with its default `admin:changeit`): wrong ones are
  UNAUTHENTICATED, missing ones PERMISSION_DENIED with `exception: access-denied`;
- system events (`$`-streams) are in `$all`, as on a real node, so readers must filter them.

Anything else the real server offers (deletes, stream subscriptions, batch appends, persistent
subscriptions, projections) is refused with UNIMPLEMENTED and a message saying the stand-in
does not serve it. With --data FILE the log survives a restart (a JSON line per event).

Usage: python standin.py --protos DIR [--port 0] [--data FILE] [--max-append-size N]
Prints "LISTENING <port>" on stdout once it serves.
"""

import argparse
import base64
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures

import grpc
from grpc_tools import protoc

USER, PASSWORD = "admin", "changeit"
VERSION = "25.1.0"
# KurrentDB's default maximum append size up to 25.0 (1 MiB); 25.1 raised it. The stricter one.
DEFAULT_MAX_APPEND_SIZE = 1024 * 1024


def compile_protos(protos):
    out = tempfile.mkdtemp(prefix="kurrentdb-standin-")
    names = ["shared.proto", "status.proto", "code.proto", "streams.proto",
             "serverfeatures.proto", "gossip.proto"]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{protos}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}"] + [os.path.join(protos, n) for n in names])
    if code != 0:
        sys.exit(f"compiling the protos in {protos} failed")
    sys.path.insert(0, out)


class Record:
    __slots__ = ("stream", "revision", "id", "type", "content_type", "data", "custom",
                 "created", "position")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def to_json(self):
        return json.dumps({
            "stream": self.stream, "revision": self.revision, "id": str(self.id),
            "type": self.type, "content_type": self.content_type,
            "data": base64.b64encode(self.data).decode(),
            "custom": base64.b64encode(self.custom).decode(),
            "created": self.created, "position": self.position})

    @staticmethod
    def from_json(line):
        d = json.loads(line)
        return Record(stream=d["stream"], revision=d["revision"], id=uuid.UUID(d["id"]),
                      type=d["type"], content_type=d["content_type"],
                      data=base64.b64decode(d["data"]), custom=base64.b64decode(d["custom"]),
                      created=d["created"], position=d["position"])


class Log:
    """The node's transaction log: records in commit order, positions strictly increasing
    and not contiguous (a record's position is its byte offset, as on a real node)."""

    def __init__(self, data_file):
        self.lock = threading.Condition()
        self.records = []
        self.by_position = {}
        self.streams = {}
        self.next_position = 0
        self.data_file = data_file
        if data_file and os.path.exists(data_file):
            with open(data_file) as f:
                for line in f:
                    if line.strip():
                        self._index(Record.from_json(line))
        if not self.records:
            # What a fresh node writes before any client does.
            with self.lock:
                self._write("$settings", [(uuid.uuid4(), "$settings", "application/json",
                                           b'{"$userStreamAcl":{}}', b"")])
                self._write("$scavenges", [(uuid.uuid4(), "$scavengeIndexInitialized",
                                            "application/json", b"{}", b"")])

    def _index(self, r):
        self.records.append(r)
        self.by_position[r.position] = len(self.records) - 1
        self.streams.setdefault(r.stream, []).append(len(self.records) - 1)
        self.next_position = r.position + 128 + len(r.data) + len(r.custom)

    def _write(self, stream, events):
        written = []
        first = len(self.streams.get(stream, []))
        created = time.time_ns() // 100
        for i, (eid, etype, ctype, data, custom) in enumerate(events):
            r = Record(stream=stream, revision=first + i, id=eid, type=etype,
                       content_type=ctype, data=data, custom=custom, created=created,
                       position=self.next_position)
            self._index(r)
            written.append(r)
        if self.data_file:
            with open(self.data_file, "a") as f:
                for r in written:
                    f.write(r.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
        self.lock.notify_all()
        return written

    def last_revision(self, stream):
        indexes = self.streams.get(stream)
        return len(indexes) - 1 if indexes else None

    def first_kept(self, stream):
        """The first revision a read may return: a `$maxCount` in the stream's metadata (the
        last `$metadata` event of `$$stream`) hides all but the newest events, as the server
        does before a scavenge reclaims them."""
        meta = self.streams.get("$$" + stream)
        if not meta:
            return 0
        try:
            kept = json.loads(self.records[meta[-1]].data).get("$maxCount")
        except (ValueError, AttributeError):
            return 0
        if not isinstance(kept, int) or kept < 1:
            return 0
        return max(0, len(self.streams.get(stream, [])) - kept)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--protos", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data")
    parser.add_argument("--max-append-size", type=int, default=DEFAULT_MAX_APPEND_SIZE)
    args = parser.parse_args()
    compile_protos(args.protos)
    import gossip_pb2
    import gossip_pb2_grpc
    import serverfeatures_pb2
    import serverfeatures_pb2_grpc
    import shared_pb2
    import streams_pb2
    import streams_pb2_grpc

    log = Log(args.data)
    expected_auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def refuse(context, code, message, exception=None, **trailers):
        pairs = []
        if exception:
            pairs.append(("exception", exception))
        pairs.extend((k.replace("_", "-"), str(v)) for k, v in trailers.items())
        if pairs:
            context.set_trailing_metadata(tuple(pairs))
        context.abort(code, message)

    def authorize(context):
        auth = dict(context.invocation_metadata()).get("authorization")
        if auth is None:
            refuse(context, grpc.StatusCode.PERMISSION_DENIED, "Access Denied", "access-denied")
        if auth != expected_auth:
            refuse(context, grpc.StatusCode.UNAUTHENTICATED, "Bad authentication")

    def parse_uuid(message, context):
        kind = message.WhichOneof("value")
        if kind == "structured":
            msb = message.structured.most_significant_bits & (2 ** 64 - 1)
            lsb = message.structured.least_significant_bits & (2 ** 64 - 1)
            return uuid.UUID(int=(msb << 64) | lsb)
        if kind == "string":
            try:
                return uuid.UUID(message.string)
            except ValueError:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid event id {message.string!r}")
        refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "an event id is required")

    def stream_name(identifier, context):
        try:
            name = identifier.stream_name.decode("utf-8")
        except UnicodeDecodeError:
            refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "a stream name must be UTF-8")
        if not name:
            refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "a stream name must not be empty")
        return name

    class ServerFeatures(serverfeatures_pb2_grpc.ServerFeaturesServicer):
        def GetSupportedMethods(self, request, context):
            methods = [serverfeatures_pb2.SupportedMethod(
                method_name=m, service_name="event_store.client.streams.streams")
                for m in ("read", "append")]
            return serverfeatures_pb2.SupportedMethods(methods=methods,
                                                       event_store_server_version=VERSION)

    class Gossip(gossip_pb2_grpc.GossipServicer):
        def __init__(self, port):
            self.port = port

        def Read(self, request, context):
            authorize(context)
            member = gossip_pb2.MemberInfo(
                instance_id=shared_pb2.UUID(string=str(NODE_ID)),
                time_stamp=time.time_ns() // 100,
                state=gossip_pb2.MemberInfo.VNodeState.Leader, is_alive=True,
                http_end_point=gossip_pb2.EndPoint(address="127.0.0.1", port=self.port))
            return gossip_pb2.ClusterInfo(members=[member])

    def expected_of(options):
        kind = options.WhichOneof("expected_stream_revision")
        if kind is None:
            return None
        return ("revision", options.revision) if kind == "revision" else (kind, None)

    def wrong_version(expected, current):
        w = streams_pb2.AppendResp.WrongExpectedVersion()
        if current is None:
            w.current_no_stream.SetInParent()
            w.no_stream_20_6_0.SetInParent()
        else:
            w.current_revision = current
            w.current_revision_20_6_0 = current
        kind, n = expected
        if kind == "revision":
            w.expected_revision = n
            w.expected_revision_20_6_0 = n
        elif kind == "any":
            w.expected_any.SetInParent()
            w.any_20_6_0.SetInParent()
        elif kind == "stream_exists":
            w.expected_stream_exists.SetInParent()
            w.stream_exists_20_6_0.SetInParent()
        else:
            w.expected_no_stream.SetInParent()
            w.expected_revision_20_6_0 = 2 ** 64 - 1
        return streams_pb2.AppendResp(wrong_expected_version=w)

    def success(last):
        s = streams_pb2.AppendResp.Success()
        if last is None:
            s.no_stream.SetInParent()
            s.no_position.SetInParent()
        else:
            s.current_revision = last.revision
            s.position.commit_position = last.position
            s.position.prepare_position = last.position
        return streams_pb2.AppendResp(success=s)

    class Streams(streams_pb2_grpc.StreamsServicer):
        def Append(self, request_iterator, context):
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("content") != "options":
                refuse(context, grpc.StatusCode.UNKNOWN, "the first message of an append must be its options")
            expected = expected_of(first.options)
            if expected is None:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "expected_stream_revision is required")
            authorize(context)
            stream = stream_name(first.options.stream_identifier, context)
            events, size = [], 0
            for message in request_iterator:
                if message.WhichOneof("content") != "proposed_message":
                    refuse(context, grpc.StatusCode.UNKNOWN, "an append's later messages must be proposed messages")
                p = message.proposed_message
                for key in ("type", "content-type"):
                    if key not in p.metadata:
                        refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                               f"Required Metadata Property '{key}' is missing",
                               "missing-required-metadata-property",
                               required_metadata_properties="type,content-type")
                size += len(p.data) + len(p.custom_metadata)
                if size > args.max_append_size:
                    refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                           f"Maximum Append Size of {args.max_append_size} Exceeded.",
                           "maximum-append-size-exceeded",
                           maximum_append_size=args.max_append_size)
                events.append((parse_uuid(p.id, context), p.metadata["type"],
                               p.metadata["content-type"], p.data, p.custom_metadata))
            with log.lock:
                current = log.last_revision(stream)
                kind, n = expected
                ids = [e[0] for e in events]
                # Idempotence, KurrentDB's two regimes. Strong (NoStream, or a revision
                # behind the stream): the ids are compared with the events stored right after
                # the expected revision; all equal is the original write, answered with its
                # result, anything else a wrong expected version. Weak (Any, StreamExists):
                # only the first id decides; found in this stream, the batch must match the
                # events from there on (the original write) or it is a wrong expected version;
                # not found, it is a new write. (The real node looks the weak ids up in a
                # bounded cache of recent ids, so very old retries with Any write again.)
                # An exact revision equal to the stream's is never a retry: it writes again.
                if kind in ("no_stream", "revision") and events:
                    start = 0 if kind == "no_stream" else n + 1
                    if current is not None and start <= current:
                        indexes = log.streams[stream][start:start + len(ids)]
                        stored = [log.records[i].id for i in indexes]
                        if stored == ids:
                            return success(log.records[indexes[-1]])
                        return wrong_version(expected, current)
                if kind in ("any", "stream_exists") and events and current is not None:
                    indexes = log.streams[stream]
                    at = next((k for k, i in enumerate(indexes) if log.records[i].id == ids[0]), None)
                    if at is not None:
                        window = indexes[at:at + len(ids)]
                        if [log.records[i].id for i in window] == ids:
                            return success(log.records[window[-1]])
                        return wrong_version(expected, current)
                admitted = {
                    "any": True,
                    "no_stream": current is None,
                    "stream_exists": current is not None,
                    "revision": current == n,
                }[kind]
                if not admitted:
                    return wrong_version(expected, current)
                if not events:
                    last = log.records[log.streams[stream][-1]] if current is not None else None
                    return success(last)
                written = log._write(stream, events)
                return success(written[-1])

        def Read(self, request, context):
            o = request.options
            stream_option = o.WhichOneof("stream_option")
            count_option = o.WhichOneof("count_option")
            filter_option = o.WhichOneof("filter_option")
            uuid_option = o.uuid_option.WhichOneof("content")
            if uuid_option is None:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "'uuidOption' is a required argument")
            if None in (stream_option, count_option, filter_option):
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                       "stream_option, count_option and filter_option are required")
            authorize(context)
            backwards = o.read_direction == streams_pb2.ReadReq.Options.Backwards
            combination = (stream_option, count_option, backwards, filter_option)
            allowed = {("stream", "count", False, "no_filter"), ("stream", "count", True, "no_filter"),
                       ("all", "count", False, "no_filter"), ("all", "count", True, "no_filter"),
                       ("all", "count", False, "filter"), ("all", "count", True, "filter"),
                       ("stream", "subscription", False, "no_filter"),
                       ("all", "subscription", False, "no_filter"),
                       ("all", "subscription", False, "filter")}
            if combination not in allowed:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"The combination of {combination} is invalid.")
            matches = None
            every = None
            if filter_option == "filter":
                matches, every = compile_filter(o.filter, context)
            if stream_option == "stream" and count_option == "count":
                yield from read_stream(o, backwards, uuid_option, context)
            elif stream_option == "all" and count_option == "count":
                yield from read_all(o, backwards, matches, uuid_option, context)
            elif stream_option == "all":
                yield from subscribe_all(o, matches, every, uuid_option, context)
            else:
                refuse(context, grpc.StatusCode.UNIMPLEMENTED,
                       "the ionroller stand-in serves no stream subscriptions")

        def Delete(self, request, context):
            refuse(context, grpc.StatusCode.UNIMPLEMENTED, "the ionroller stand-in serves no deletes")

        def Tombstone(self, request, context):
            refuse(context, grpc.StatusCode.UNIMPLEMENTED, "the ionroller stand-in serves no tombstones")

        def BatchAppend(self, request_iterator, context):
            refuse(context, grpc.StatusCode.UNIMPLEMENTED, "the ionroller stand-in serves no batch appends")

    def compile_filter(f, context):
        kind = f.WhichOneof("filter")
        window = f.WhichOneof("window")
        if kind is None or window is None:
            refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "a filter needs its kind and its window")
        if f.checkpointIntervalMultiplier < 1:
            refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "checkpointIntervalMultiplier must be at least 1")
        expression = getattr(f, kind)
        if expression.regex:
            try:
                pattern = re.compile(expression.regex)
            except re.error as e:
                refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid filter regex: {e}")
            test = lambda text: pattern.search(text) is not None  # noqa: E731
        else:
            prefixes = list(expression.prefix)
            test = lambda text: any(text.startswith(p) for p in prefixes)  # noqa: E731
        field = (lambda r: r.stream) if kind == "stream_identifier" else (lambda r: r.type)
        size = f.max if window == "max" else 32
        return (lambda r: test(field(r))), size * f.checkpointIntervalMultiplier

    def recorded(r, uuid_option):
        e = streams_pb2.ReadResp.ReadEvent.RecordedEvent(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=r.stream.encode()),
            stream_revision=r.revision, prepare_position=r.position,
            commit_position=r.position, custom_metadata=r.custom, data=r.data)
        if uuid_option == "string":
            e.id.string = str(r.id)
        else:
            value = r.id.int
            e.id.structured.most_significant_bits = to_i64(value >> 64)
            e.id.structured.least_significant_bits = to_i64(value & (2 ** 64 - 1))
        e.metadata["type"] = r.type
        e.metadata["content-type"] = r.content_type
        e.metadata["created"] = str(r.created)
        return streams_pb2.ReadResp(event=streams_pb2.ReadResp.ReadEvent(
            event=e, commit_position=r.position))

    def read_stream(o, backwards, uuid_option, context):
        name = stream_name(o.stream.stream_identifier, context)
        revision = o.stream.WhichOneof("revision_option")
        if revision is None:
            refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "a stream read needs its revision option")
        with log.lock:
            indexes = list(log.streams.get(name, []))
            first = log.first_kept(name)
        if not indexes:
            yield streams_pb2.ReadResp(stream_not_found=streams_pb2.ReadResp.StreamNotFound(
                stream_identifier=o.stream.stream_identifier))
            return
        last = len(indexes) - 1
        if revision == "start":
            start = 0
        elif revision == "end":
            start = last if backwards else last + 1
        else:
            start = o.stream.revision
        if backwards:
            chosen = [indexes[i] for i in range(min(start, last), first - 1, -1)][:o.count]
        else:
            chosen = indexes[max(start, first):][:o.count]
        for i in chosen:
            yield recorded(log.records[i], uuid_option)
        if o.control_option.compatibility >= 1:
            yield streams_pb2.ReadResp(last_stream_position=last)

    def start_index(all_options, context, for_subscription):
        """Index of the first record at or after the requested position (or len for end)."""
        kind = all_options.WhichOneof("all_option")
        if kind is None:
            refuse(context, grpc.StatusCode.INVALID_ARGUMENT, "a $all read needs its position option")
        with log.lock:
            if kind == "start":
                return 0, None
            if kind == "end":
                return len(log.records), None
            p = all_options.position
            if p.commit_position != p.prepare_position or p.commit_position not in log.by_position:
                if for_subscription and p.commit_position == p.prepare_position and p.commit_position >= log.next_position:
                    return len(log.records), None
                # A real node answers a read from no record's position with UNKNOWN (its
                # client calls that a server error), a subscription with INVALID_ARGUMENT.
                code = grpc.StatusCode.INVALID_ARGUMENT if for_subscription else grpc.StatusCode.UNKNOWN
                refuse(context, code, "Trying to read from an invalid position.")
            return log.by_position[p.commit_position], p.commit_position

    def read_all(o, backwards, matches, uuid_option, context):
        index, _ = start_index(o.all, context, False)
        with log.lock:
            records = list(log.records)
        if backwards:
            candidates = reversed(records[:index])
        else:
            candidates = records[index:]
        sent = 0
        for r in candidates:
            if sent >= o.count:
                break
            if matches is None or matches(r):
                yield recorded(r, uuid_option)
                sent += 1

    def subscribe_all(o, matches, every, uuid_option, context):
        index, exclusive = start_index(o.all, context, True)
        if exclusive is not None:
            index += 1  # a subscription starts strictly after its position
        yield streams_pb2.ReadResp(confirmation=streams_pb2.ReadResp.SubscriptionConfirmation(
            subscription_id=str(uuid.uuid4())))
        considered = 0
        last_sent = None
        caught_up = False
        while context.is_active():
            with log.lock:
                if index >= len(log.records) and caught_up:
                    log.lock.wait(timeout=0.5)
                batch = log.records[index:]
            for r in batch:
                index += 1
                considered += 1
                if matches is None or matches(r):
                    last_sent = r.position
                    yield recorded(r, uuid_option)
                if matches is not None and considered % every == 0:
                    yield checkpoint(r.position)
            if not caught_up:
                caught_up = True
                head = log.records[index - 1].position if index > 0 else None
                if matches is not None and head is not None:
                    yield checkpoint(head)
                up = streams_pb2.ReadResp.CaughtUp()
                up.timestamp.GetCurrentTime()
                at = head if matches is not None else last_sent if last_sent is not None else head
                if at is not None:
                    up.position.commit_position = at
                    up.position.prepare_position = at
                yield streams_pb2.ReadResp(caught_up=up)

    def checkpoint(position):
        c = streams_pb2.ReadResp.Checkpoint(commit_position=position, prepare_position=position)
        c.timestamp.GetCurrentTime()
        return streams_pb2.ReadResp(checkpoint=c)

    def to_i64(value):
        return value - 2 ** 64 if value >= 2 ** 63 else value

    NODE_ID = uuid.uuid4()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        options=[
            # The client pings every 10 s while a subscription is open; a real node allows it.
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ])
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    streams_pb2_grpc.add_StreamsServicer_to_server(Streams(), server)
    serverfeatures_pb2_grpc.add_ServerFeaturesServicer_to_server(ServerFeatures(), server)
    gossip_pb2_grpc.add_GossipServicer_to_server(Gossip(port), server)
    server.start()
    print(f"LISTENING {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
