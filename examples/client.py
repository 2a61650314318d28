#!/usr/bin/env python3
"""client.py -- a small coil client over ZeroMQ (pyzmq; Debian: python3-zmq).

    examples/client.py [--server tcp://127.0.0.1:5555] [--events tcp://127.0.0.1:5556]
                       --name NAME --file DOC.txt --query WORDS --question TEXT

Ingests a document (streamed in parts), waits for its doc.complete event,
searches it, starts a session from its saved state, appends the question
(a prompt) and generates its continuation (tokens streamed back), printing
each step.  The Client class is the whole protocol: JSON frames with a
request id; partial replies (generated tokens, ingest progress, a queued
job's place); a binary frame for state export/import.
"""
import argparse
import itertools
import json
import sys
import time

import zmq


class CoilError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Client:
    def __init__(self, server, events=None, timeout_ms=60000, curve=None):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve:  # (server_public, client_public, client_secret), Z85
            self.sock.curve_serverkey, self.sock.curve_publickey, self.sock.curve_secretkey = (
                k.encode() for k in curve)
        self.sock.connect(server)
        self.sub = None
        if events:
            self.sub = self.ctx.socket(zmq.SUB)
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.setsockopt(zmq.SUBSCRIBE, b"")
            self.sub.connect(events)
        self.timeout_ms = timeout_ms
        self.ids = itertools.count(1)

    def request(self, op, blob=None, on_partial=None, **fields):
        """Sends one request; returns (result, blob or None). Raises CoilError."""
        rid = next(self.ids)
        msg = dict(v=1, id=rid, op=op, **fields)
        frames = [json.dumps(msg).encode()]
        if blob is not None:
            frames.append(blob)
        self.sock.send_multipart(frames)
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0 or not self.sock.poll(left):
                raise TimeoutError(f"no reply to {op} within {self.timeout_ms} ms")
            parts = self.sock.recv_multipart()
            rep = json.loads(parts[0])
            if rep.get("id") != rid:
                continue  # a late reply to an earlier request
            if rep.get("partial"):  # a token, progress or a queue place: alive, wait again
                deadline = time.monotonic() + self.timeout_ms / 1000
                if on_partial:
                    on_partial(rep["result"])
                continue
            if not rep.get("ok"):
                raise CoilError(rep["error"]["code"], rep["error"]["message"])
            return rep["result"], (parts[1] if len(parts) > 1 else None)

    def ingest(self, name, text, part_bytes=1 << 20, replace=False):
        """Streams text in parts of about part_bytes (cut at character boundaries)."""
        data = text.encode()
        parts, i = [], 0
        while i < len(data) or not parts:
            j = min(len(data), i + part_bytes)
            while j < len(data) and (data[j] & 0xC0) == 0x80:
                j += 1
            parts.append(data[i:j].decode())
            i = j
        for k, p in enumerate(parts):
            res, _ = self.request("ingest", name=name, text=p, part=k, last=k == len(parts) - 1,
                                  replace=replace)
        return res

    def wait_event(self, topic, doc, timeout_s=600, on_event=None):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.sub.poll(200):
                continue
            t, body = self.sub.recv_multipart()
            ev = json.loads(body)
            if on_event:
                on_event(t.decode(), ev)
            if t.decode() == topic and doc is None:
                return ev
            if t.decode() in (topic, "doc.failed") and ev.get("doc") == doc:
                if t.decode() == "doc.failed":
                    raise CoilError(ev["error"]["code"], ev["error"]["message"])
                return ev
        raise TimeoutError(f"no {topic} event for {doc}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="tcp://127.0.0.1:5555")
    ap.add_argument("--events", default="tcp://127.0.0.1:5556")
    ap.add_argument("--name", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--question", required=True)
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.8)
    args = ap.parse_args()

    c = Client(args.server, args.events)
    c.wait_event("coild.heartbeat", None, timeout_s=10)  # the subscription is live
    for attempt in range(15):  # first contact: ask again if the connection was still being made
        try:
            c.timeout_ms = 2000
            h = c.request("health")[0]
            t0 = time.monotonic()  # right after coild starts, its workers may still be loading
            while h["workers"] < h["workers_configured"] and time.monotonic() - t0 < 30:
                time.sleep(0.1)
                h = c.request("health")[0]
            print(f"health: {h['status']}, {h['workers']} of {h['workers_configured']} workers ready")
            break
        except TimeoutError:
            if attempt == 14:
                raise
    c.timeout_ms = 60000
    with open(args.file, encoding="utf-8", errors="replace") as f:
        text = f.read()
    t0 = time.monotonic()
    res = c.ingest(args.name, text, replace=True)
    print(f"ingest accepted: {res}")

    def progress(topic, ev):
        if topic == "ingest.progress":
            print(f"  progress: {ev['tokens']} tokens, {ev['tokens_per_s']:.0f} tok/s", file=sys.stderr)

    ev = c.wait_event("doc.complete", args.name, on_event=progress)
    print(f"complete: {ev['tokens']} tokens in {time.monotonic() - t0:.2f} s")
    hits, _ = c.request("search", query=args.query, doc=args.name, limit=3)
    for h in hits["hits"]:
        print(f"  hit chunk {h['chunk']} tokens [{h['token_start']}, {h['token_end']}): {h['snippet']!r}")
    sess, _ = c.request("session.new", doc=args.name)
    print("session:", sess["session"], "at token", sess["position"])
    c.request("session.append", session=sess["session"], text=args.question)
    print("continuation: ", end="", flush=True)
    out, _ = c.request("generate", session=sess["session"], n=args.n, seed=args.seed,
                       temperature=args.temperature,
                       on_partial=lambda p: print(p.get("text", ""), end="", flush=True))
    print()
    sc, _ = c.request("score", session=sess["session"], text=out["text"] or " the")
    print(f"score of the continuation: {sc['logprob']:.2f} nats over {len(sc['tokens'])} tokens")


if __name__ == "__main__":
    main()
