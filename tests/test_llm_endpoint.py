"""The teacher and judge clients against a real OpenAI-compatible HTTP server on loopback (no mocks).

The server (``aigp.openai_compat.local_endpoint``) answers ``/v1/chat/completions`` and ``/v1/completions`` in vLLM's
response shape, with the built-in teacher and the rule judge as its models; the tests talk to it over TCP
with our client and with the ``openai`` SDK.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from llm_support import LOW_STOCK, MID, behind_pace_row

from aigp.distillation.judge import CombinedJudge, LLMJudge, RuleJudge, rule_judge_backend
from aigp.distillation.teacher import KnowledgeBaseTeacher, teacher_backend
from aigp.llm.prompt import build_prompt
from aigp.openai_compat.client import EndpointConfig, OpenAICompatibleClient
from aigp.openai_compat.local_endpoint import LocalOpenAIServer, Overloaded

TEACHER = KnowledgeBaseTeacher()


class Flaky:
    """Answers 503 to the first ``failures`` requests, then like the teacher."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0
        self.lock = threading.Lock()

    def __call__(self, messages, params):
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise Overloaded("busy")
        return teacher_backend(TEACHER)(messages, params)


def slow(messages, params):
    time.sleep(1.0)
    return ["late"]


@pytest.fixture(scope="module")
def server():
    backends = {"aigp-kb-teacher": teacher_backend(TEACHER), "aigp-rule-judge": rule_judge_backend(),
                "slow": slow}
    with LocalOpenAIServer(backends) as srv:
        yield srv


def _client(server: LocalOpenAIServer, **kw) -> OpenAICompatibleClient:
    values = {"base_url": server.base_url, "model": "aigp-kb-teacher", "backoff_s": 0.01, "api_key_env": None}
    values.update(kw)
    return OpenAICompatibleClient(EndpointConfig.build(**values))


def test_teacher_over_http_equals_the_in_process_teacher(server) -> None:
    prompt = build_prompt(MID)
    expected = TEACHER.respond(prompt, temperature=0.7, seed=42).text
    for route in ("chat", "completions"):
        with _client(server, route=route, temperature=0.7) as client:
            completion = client.complete(prompt.messages, seed=42)
        assert completion.ok and completion.attempts == 1, completion.error
        assert completion.text == expected
        assert completion.finish_reasons == ("stop",) and completion.prompt_tokens > 0
    with _client(server) as client:
        assert client.models() == ["aigp-kb-teacher", "aigp-rule-judge", "slow"]
        samples = client.complete(prompt.messages, n=3, seed=1, temperature=1.0)
    assert len(samples.texts) == 3


def test_concurrent_batches_keep_their_order(server) -> None:
    prompts = [build_prompt(r) for r in (MID, LOW_STOCK, behind_pace_row())] * 4
    with _client(server, concurrency=4, temperature=0.0) as client:
        completions = client.complete_many([p.messages for p in prompts])
    assert [c.text for c in completions] == [TEACHER.respond(p, temperature=0.0).text for p in prompts]


def test_retries_with_backoff_then_success_or_a_reported_failure() -> None:
    flaky = Flaky(failures=2)
    with LocalOpenAIServer({"flaky": flaky}) as srv, _client(srv, model="flaky", max_retries=3) as client:
        completion = client.complete(build_prompt(MID).messages)
    assert completion.ok and completion.attempts == 3 and flaky.calls == 3
    stubborn = Flaky(failures=10)
    with LocalOpenAIServer({"flaky": stubborn}) as srv, _client(srv, model="flaky", max_retries=1) as client:
        failed = client.complete(build_prompt(MID).messages)
    assert not failed.ok and failed.attempts == 2 and "HTTP 503" in failed.error and failed.texts == ()


def test_client_errors_are_not_retried_and_timeouts_are(server) -> None:
    with _client(server, model="no-such-model", max_retries=3) as client:
        missing = client.complete([{"role": "user", "content": "hi"}])
    assert not missing.ok and missing.attempts == 1 and "HTTP 404" in missing.error
    with _client(server, model="slow", timeout_s=0.2, max_retries=1) as client:
        timed_out = client.complete([{"role": "user", "content": "hi"}])
    assert not timed_out.ok and timed_out.attempts == 2 and "timeout" in timed_out.error
    bad = httpx.post(f"{server.base_url}/chat/completions", content=b"{not json", timeout=5)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]["message"]
    empty = httpx.post(f"{server.base_url}/chat/completions", json={"model": "aigp-kb-teacher"}, timeout=5)
    assert empty.status_code == 400 and "messages" in empty.json()["error"]["message"]


def test_length_limit_is_reported_like_vllm(server) -> None:
    with _client(server, max_tokens=20, temperature=0.0) as client:
        completion = client.complete(build_prompt(MID).messages)
    assert completion.finish_reasons == ("length",) and len(completion.text) < 200


def test_the_openai_sdk_talks_to_the_same_server(server) -> None:
    from openai import OpenAI

    prompt = build_prompt(MID)
    sdk = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    chat = sdk.chat.completions.create(model="aigp-kb-teacher", messages=prompt.messages, temperature=0.0, seed=7)
    assert chat.choices[0].message.content == TEACHER.respond(prompt, temperature=0.0, seed=7).text
    text = sdk.completions.create(model="aigp-kb-teacher", prompt=prompt.chatml(), temperature=0.0, max_tokens=4096)
    assert text.choices[0].text == chat.choices[0].message.content


def test_llm_judge_over_http_agrees_with_the_rule_judge(server) -> None:
    prompt = build_prompt(MID)
    clean = TEACHER.respond(prompt, temperature=0.0).text
    broken = clean.replace("is above roi_target", "is below roi_target")
    pairs = [(prompt, clean), (prompt.messages, broken), (prompt, "")]
    with _client(server, model="aigp-rule-judge") as client:
        llm = LLMJudge(client).judge_many(pairs)
        combined = CombinedJudge(RuleJudge(), LLMJudge(client)).judge_many(pairs)
    rule = RuleJudge().judge_many(pairs)
    assert [v.scores for v in llm] == [v.scores for v in rule]
    assert [v.kept for v in llm] == [True, False, False] and [v.kept for v in combined] == [True, False, False]
    assert llm[1].scores["reasoning_internal_coherence"] < 5 and llm[0].source == "llm"
    assert combined[1].source == "rule+llm" and any("llm judge" in i for i in combined[1].issues[
        "reasoning_internal_coherence"])
