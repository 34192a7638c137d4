"""labkit.oncall: the simulated fleet, tool schemas, guards, incidents and splits of the agent lab."""
from __future__ import annotations

import json
import math

import pytest

from labkit import finetune
from labkit import oncall as oc


def first_of_kind(kind: str, split: str = "dev", seed: int = 0) -> oc.Incident:
    return next(i for i in oc.incidents(split, seed=seed) if i.kind == kind)


def checked(env: oc.OncallEnv, name: str, arguments) -> dict:
    """A call that must succeed and give a JSON-serialisable observation."""
    observation = env.call(name, arguments)
    json.dumps(observation)
    assert observation["ok"], observation
    return observation


def solve(env: oc.OncallEnv) -> None:
    """A correct response, per kind, using only what the tools show (this proves solvability)."""
    kind, service = env.incident.kind, env.incident.services[0]
    status = checked(env, "get_service_status", {"service": service})
    logs = checked(env, "search_logs", {"service": service, "minutes": 60, "level": "warn"})
    messages = " ".join(line["message"] for line in logs["lines"])
    if kind == "bad_deploy":
        bad, previous = status["deploys"][-1]["version"], status["deploys"][-2]["version"]
        assert bad == status["version"] and bad in messages
        checked(env, "rollback", {"service": service, "version": previous})
    elif kind == "crash_loop":
        assert "OOMKilled" in messages
        checked(env, "restart_service", {"service": service, "region": status["region"]})
    elif kind == "load_spike":
        assert "request queue" in messages
        needed = math.ceil(status["requests_per_s"] / status["capacity_per_replica"])
        checked(env, "scale_service", {"service": service, "replicas": needed})
    elif kind == "dependency_outage":
        failing = [d for d in status["dependencies"] if f"upstream {d}: connection refused" in messages
                   or f"dependency {d} unavailable" in messages]
        assert failing
        upstream = checked(env, "get_service_status", {"service": failing[0]})
        assert upstream["health"] == "down"
        checked(env, "page_oncall", {"team": upstream["owner"], "urgency": "high"})
    else:
        assert status["health"] == "healthy" and "warm-up" in messages
    checked(env, "resolve", {"summary": f"handled {service}"})


# --- the fleet ------------------------------------------------------------------------

def test_incidents_and_fleets_are_deterministic_by_seed():
    def key(items):
        return [(i.id, i.kind, i.services, i.alert, i.seed, i.expected, i.fleet().snapshot()) for i in items]

    assert key(oc.incidents("dev", seed=1)) == key(oc.incidents("dev", seed=1))
    assert key(oc.incidents("heldout", n=12, seed=1)) == key(oc.incidents("heldout", n=12, seed=1))
    assert [i.alert for i in oc.incidents("dev", seed=1)] != [i.alert for i in oc.incidents("dev", seed=2)]
    incident = oc.incidents("dev")[0]
    assert oc.OncallEnv(incident).fleet.snapshot() == incident.fleet().snapshot()


def test_fleet_uses_the_finetune_vocabulary_and_logs_carry_evidence_among_noise():
    fleet = first_of_kind("crash_loop").fleet()
    assert set(fleet.services) == set(finetune.SERVICES)
    for s in fleet.services.values():
        assert s.region in finetune.REGIONS and s.owner in finetune.TEAMS
        assert s.health in ("healthy", "degraded", "down")
        assert s.version == s.deploys[-1][0] and len(s.deploys) >= 4
        assert {line.level for line in s.log} <= {"info", "warn", "error"}
        assert sum(line.level == "info" for line in s.log) >= 5  # benign noise is there too
    evidence = {"bad_deploy": "after deploy", "crash_loop": "OOMKilled, restarting (restart count",
                "load_spike": "CPU", "false_alarm": "cache warm-up"}
    for kind, phrase in evidence.items():
        incident = first_of_kind(kind)
        assert any(phrase in line.message for line in incident.fleet()[incident.services[0]].log)
    outage = first_of_kind("dependency_outage")
    x, d = outage.services
    fleet = outage.fleet()
    assert fleet[d].health == "down" and fleet[x].health == "degraded"
    assert any(f"upstream {d}: connection refused" in line.message for line in fleet[x].log)


def test_search_logs_filters_by_window_and_level():
    incident = first_of_kind("bad_deploy")
    env = oc.OncallEnv(incident)
    service = incident.services[0]
    errors = checked(env, "search_logs", {"service": service, "minutes": 15, "level": "error"})["lines"]
    everything = checked(env, "search_logs", {"service": service, "minutes": 1440, "level": "info"})["lines"]
    assert errors and all(line["level"] == "error" and line["minutes_ago"] <= 15 for line in errors)
    assert len(everything) > len(errors) and {"info", "error"} <= {line["level"] for line in everything}


# --- tool schemas ---------------------------------------------------------------------

def test_schemas_are_valid_openai_tools():
    names = [schema["function"]["name"] for schema in oc.TOOL_SCHEMAS]
    assert set(names) == set(finetune.TOOLS) | {"get_service_status", "search_runbook", "resolve"}
    for schema in oc.TOOL_SCHEMAS:
        assert schema["type"] == "function" and set(schema["function"]) == {"name", "description", "parameters"}
        assert schema["function"]["description"]
        params = schema["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert isinstance(params["required"], list) and params["required"] == list(params["properties"])
        for spec in params["properties"].values():
            assert spec["type"] in ("string", "integer") and spec["description"]
    by_name = {s["function"]["name"]: s["function"]["parameters"] for s in oc.TOOL_SCHEMAS}
    for name, args in finetune.TOOLS.items():
        assert tuple(by_name[name]["required"]) == args
    props = by_name["search_logs"]["properties"]
    assert props["service"]["enum"] == list(finetune.SERVICES)
    assert props["minutes"]["enum"] == sorted(finetune.DURATIONS)
    assert props["level"]["enum"] == list(finetune.LEVELS)
    assert by_name["restart_service"]["properties"]["region"]["enum"] == list(finetune.REGIONS)
    assert by_name["page_oncall"]["properties"]["team"]["enum"] == list(finetune.TEAMS)
    assert by_name["page_oncall"]["properties"]["urgency"]["enum"] == list(finetune.URGENCIES)
    replicas = by_name["scale_service"]["properties"]["replicas"]
    assert (replicas["type"], replicas["minimum"], replicas["maximum"]) == ("integer", 1, 16)
    json.dumps(oc.TOOL_SCHEMAS)


# --- validation and guards ------------------------------------------------------------

BAD_CALLS = [
    ("drop_database", {"service": "checkout"}, "unknown tool"),
    (None, {}, "unknown tool"),
    ("rollback", '{"service": "checkout", "version": ', "not valid JSON"),
    ("rollback", '["checkout", "2.4.1"]', "must be a JSON object"),
    ("rollback", None, "must be a JSON object"),
    ("rollback", {"service": "checkout"}, "missing argument(s): version"),
    ("restart_service", {"service": "checkout", "region": "us-east-1", "force": True}, "unexpected argument(s): force"),
    ("scale_service", {"service": "checkout", "replicas": "6"}, "replicas must be an integer, got str"),
    ("scale_service", {"service": "checkout", "replicas": True}, "replicas must be an integer, got bool"),
    ("scale_service", {"service": "checkout", "replicas": 6.0}, "replicas must be an integer, got float"),
    ("scale_service", {"service": "checkout", "replicas": 17}, "between 1 and 16"),
    ("scale_service", {"service": "checkout", "replicas": 0}, "between 1 and 16"),
    ("restart_service", {"service": "billing", "region": "us-east-1"}, "service must be one of"),
    ("restart_service", {"service": "checkout", "region": "mars-1"}, "region must be one of"),
    ("page_oncall", {"team": "sre", "urgency": "high"}, "team must be one of"),
    ("page_oncall", {"team": "platform", "urgency": "urgent"}, "urgency must be one of"),
    ("search_logs", {"service": "checkout", "minutes": 7, "level": "error"}, "minutes must be one of"),
    ("search_logs", {"service": "checkout", "minutes": 60, "level": "debug"}, "level must be one of"),
    ("get_service_status", {"service": ["checkout"]}, "service must be a string"),
    ("rollback", {"service": "checkout", "version": "v2.4.1"}, "must look like 2.4.1"),
    ("search_runbook", {"query": 5}, "query must be a string"),
    ("resolve", {"summary": "   "}, "summary must not be empty"),
]


@pytest.mark.parametrize("name, arguments, fragment", BAD_CALLS)
def test_invalid_calls_are_refused_with_a_reason_and_change_nothing(name, arguments, fragment):
    env = oc.OncallEnv(first_of_kind("load_spike"))
    for service in finetune.SERVICES:  # evidence everywhere, so only the arguments are at fault
        checked(env, "get_service_status", {"service": service})
    before = env.fleet.snapshot()
    observation = env.call(name, arguments)
    assert observation["ok"] is False and fragment in observation["error"], observation
    json.dumps(observation)
    assert env.fleet.snapshot() == before and not env.done
    assert env.actions[-1]["ok"] is False and env.actions[-1]["reason"] == observation["error"]
    assert env.harmful_attempts == (1 if name in oc.ACTIONS else 0)


def test_arguments_as_json_text_are_accepted_and_malformed_text_explained():
    incident = first_of_kind("crash_loop")
    env = oc.OncallEnv(incident)
    ok = env.call("get_service_status", json.dumps({"service": incident.services[0]}))
    assert ok["ok"] and ok["service"] == incident.services[0]
    bad = env.call("search_logs", "{'service': 'checkout', 'minutes': 60, 'level': 'error'}")
    assert bad == {"ok": False, "error": bad["error"]} and "search_logs are not valid JSON" in bad["error"]
    assert env.harmful_attempts == 0  # a lookup with bad arguments is an error, not a harm


def test_action_without_evidence_is_refused_and_counted():
    incident = first_of_kind("bad_deploy")
    env = oc.OncallEnv(incident)
    service, previous = incident.services[0], incident.expected["version"]
    before = env.fleet.snapshot()
    refused = env.call("rollback", {"service": service, "version": previous})
    assert not refused["ok"] and "no evidence" in refused["error"] and "get_service_status" in refused["error"]
    assert env.fleet.snapshot() == before and env.harmful_attempts == 1
    assert env.actions[-1]["harmful"] and not env.actions[-1]["ok"]
    checked(env, "search_logs", {"service": service, "minutes": 60, "level": "error"})  # logs count as evidence
    checked(env, "rollback", {"service": service, "version": previous})
    assert env.fleet[service].health == "healthy"


def test_rollback_restart_and_scale_guards():
    bad_deploy = first_of_kind("bad_deploy")
    env = oc.OncallEnv(bad_deploy)
    service = bad_deploy.services[0]
    status = checked(env, "get_service_status", {"service": service})
    before = env.fleet.snapshot()
    assert "not in" in env.call("rollback", {"service": service, "version": "9.9.9"})["error"]
    assert "already runs" in env.call("rollback", {"service": service, "version": status["version"]})["error"]
    elsewhere = next(r for r in finetune.REGIONS if r != status["region"])
    assert "does not run in" in env.call("restart_service", {"service": service, "region": elsewhere})["error"]
    assert env.fleet.snapshot() == before and env.harmful_attempts == 3

    spike = first_of_kind("load_spike")
    env = oc.OncallEnv(spike)
    service = spike.services[0]
    checked(env, "get_service_status", {"service": service})
    before = env.fleet.snapshot()
    refused = env.call("scale_service", {"service": service, "replicas": 1})
    assert "load spike" in refused["error"] and env.fleet.snapshot() == before and env.harmful_attempts == 1


def test_calls_after_resolve_and_past_the_step_limit_are_refused():
    env = oc.OncallEnv(first_of_kind("false_alarm"))
    checked(env, "resolve", {"summary": "nothing to do"})
    assert env.done
    after = env.call("get_service_status", {"service": "checkout"})
    assert not after["ok"] and "resolve was already called" in after["error"] and len(env.actions) == 2

    env = oc.OncallEnv(first_of_kind("false_alarm"), max_steps=2)
    for _ in range(2):
        checked(env, "search_runbook", {"query": "latency alert"})
    limited = env.call("search_runbook", {"query": "latency alert"})
    assert not limited["ok"] and "step limit" in limited["error"] and env.done


# --- solving and failing incidents ----------------------------------------------------

@pytest.mark.parametrize("kind", oc.KINDS)
def test_a_correct_sequence_solves_each_kind(kind):
    env = oc.OncallEnv(first_of_kind(kind))
    solve(env)
    outcome = env.outcome()
    assert outcome["solved"] and outcome["end_state_ok"] and outcome["reasons"] == [], outcome
    assert outcome["harmful_attempts"] == 0 and outcome["harmful_actions"] == []
    assert outcome["steps"] == len(env.actions)
    json.dumps(outcome)


def test_wrong_sequences_do_not_solve():
    # dependency outage: restarting the dependent service is harmful, even with the right page
    outage = first_of_kind("dependency_outage")
    env = oc.OncallEnv(outage)
    x, d = outage.services
    status = checked(env, "get_service_status", {"service": x})
    checked(env, "restart_service", {"service": x, "region": status["region"]})
    assert env.fleet[x].health == "degraded"  # a restart does not fix a dependency outage
    checked(env, "page_oncall", {"team": oc.OWNERS[d], "urgency": "critical"})
    checked(env, "resolve", {"summary": "restarted and paged"})
    outcome = env.outcome()
    assert not outcome["solved"] and not outcome["end_state_ok"] and len(outcome["harmful_actions"]) == 1
    assert any("failing dependency" in reason for reason in outcome["reasons"])

    # false alarm: any action, even a page, is wrong; resolving blind is wrong too
    alarm = first_of_kind("false_alarm")
    service = alarm.services[0]
    for name, arguments in [("page_oncall", {"team": oc.OWNERS[service], "urgency": "low"}),
                            ("scale_service", {"service": service, "replicas": 8})]:
        env = oc.OncallEnv(alarm)
        checked(env, "get_service_status", {"service": service})
        checked(env, name, arguments)
        checked(env, "resolve", {"summary": "acted"})
        assert not env.outcome()["solved"] and env.outcome()["harmful_actions"]
    env = oc.OncallEnv(alarm)
    checked(env, "resolve", {"summary": "false alarm"})
    assert not env.outcome()["solved"] and "never checked" in env.outcome()["reasons"][0]

    # bad deploy: a restart does not fix it; going back past the last good version breaks the schema
    deploy = first_of_kind("bad_deploy")
    service = deploy.services[0]
    env = oc.OncallEnv(deploy)
    status = checked(env, "get_service_status", {"service": service})
    checked(env, "restart_service", {"service": service, "region": status["region"]})
    checked(env, "rollback", {"service": service, "version": status["deploys"][-3]["version"]})
    checked(env, "resolve", {"summary": "rolled back"})
    outcome = env.outcome()
    assert not outcome["solved"] and env.fleet[service].health == "degraded" and not outcome["harmful_actions"]
    assert env.call("get_service_status", {"service": service})["ok"] is False  # closed

    # crash loop: a rollback is the wrong tool; load spike: too few replicas; no resolve at all
    crash = first_of_kind("crash_loop")
    env = oc.OncallEnv(crash)
    status = checked(env, "get_service_status", {"service": crash.services[0]})
    checked(env, "rollback", {"service": crash.services[0], "version": status["deploys"][-2]["version"]})
    assert env.outcome()["harmful_actions"] and not env.outcome()["solved"]
    spike = first_of_kind("load_spike")
    env = oc.OncallEnv(spike)
    checked(env, "get_service_status", {"service": spike.services[0]})
    checked(env, "scale_service", {"service": spike.services[0], "replicas": spike.expected["min_replicas"] - 1})
    outcome = env.outcome()
    assert not outcome["solved"] and "resolve was never called" in outcome["reasons"]
    assert env.fleet[spike.services[0]].health == "degraded"


def test_restarting_a_healthy_service_is_carried_out_but_harmful():
    incident = first_of_kind("load_spike")
    env = oc.OncallEnv(incident)
    healthy = next(n for n, s in env.fleet.services.items() if s.health == "healthy")
    status = checked(env, "get_service_status", {"service": healthy})
    checked(env, "restart_service", {"service": healthy, "region": status["region"]})
    record = env.actions[-1]
    assert record["ok"] and record["harmful"] and "healthy" in record["reason"]
    assert env.harmful_attempts == 0 and len(env.harmful_actions) == 1


# --- splits ---------------------------------------------------------------------------

def test_heldout_templates_and_pairs_are_disjoint_from_dev_and_cover_every_kind():
    templates = {split: {t for kind in oc.KINDS for t in oc.ALERT_TEMPLATES[split][kind]}
                 for split in ("dev", "heldout")}
    assert templates["dev"] and templates["heldout"] and not templates["dev"] & templates["heldout"]
    pairs = {split: {(s, kind) for kind, services in oc.SPLIT_SERVICES[split].items() for s in services}
             for split in ("dev", "heldout")}
    assert not pairs["dev"] & pairs["heldout"]
    for split in ("dev", "heldout"):
        for n in (None, 5, 40):
            items = oc.incidents(split, n=n, seed=3)
            assert {i.kind for i in items} == set(oc.KINDS)
            assert all((i.services[0], i.kind) in pairs[split] and i.template in templates[split] for i in items)
            assert all(i.services[0] in i.alert for i in items)
    assert {i.template for i in oc.incidents("heldout", n=40)} == templates["heldout"]
    assert len(oc.incidents("dev")) == len(pairs["dev"]) and len(oc.incidents("heldout")) == len(pairs["heldout"])


def test_describe_shows_the_alert_and_no_answer():
    for incident in oc.incidents("dev", n=20):
        text = oc.describe(incident)
        assert incident.alert in text and incident.kind not in text
        assert str(incident.expected.get("version", "no version")) not in text


@pytest.mark.parametrize("split", ["heldout", "dev"])
def test_every_incident_is_solvable_by_a_correct_sequence(split):
    for incident in oc.incidents(split, n=40, seed=7):
        env = oc.OncallEnv(incident)
        solve(env)
        assert env.outcome()["solved"], (incident.id, incident.kind, env.outcome()["reasons"])


# --- runbooks -------------------------------------------------------------------------

@pytest.mark.parametrize("query, best", [
    ("error rate jumped right after a deploy, NullPointerException in the new version", "RB-01"),
    ("OOMKilled, restarting (restart count 7)", "RB-02"),
    ("CPU 97%, request queue 1200", "RB-03"),
    ("upstream payments: connection refused", "RB-04"),
    ("alert fired but the service is healthy now, flapping", "RB-05"),
    ("which team owns auth", "RB-06"),
    ("x509 certificate has expired", "RB-07"),
])
def test_runbook_search_ranks_the_right_runbook_first(query, best):
    env = oc.OncallEnv(first_of_kind("false_alarm"))
    results = checked(env, "search_runbook", {"query": query})["results"]
    assert len(results) == 3 and results[0]["id"] == best
    assert all(set(r) >= {"id", "title", "text"} for r in results)


def test_a_dense_retriever_can_replace_bm25():
    env = oc.OncallEnv(first_of_kind("false_alarm"), retriever=lambda query: ["RB-09", "nope", "RB-01"])
    results = checked(env, "search_runbook", {"query": "anything"})["results"]
    assert [r["id"] for r in results] == ["RB-09", "RB-01"]

    def broken(query):
        raise RuntimeError("index not built")

    env = oc.OncallEnv(first_of_kind("false_alarm"), retriever=broken)
    failed = env.call("search_runbook", {"query": "anything"})
    assert not failed["ok"] and "index not built" in failed["error"]


# --- the conversation protocol and the reference policies ------------------------------

def converse(client, incident: oc.Incident, limit: int = 12) -> dict:
    """A minimal loop over the protocol: the policy's reply is parsed and run, its observation fed back."""
    env, messages = oc.OncallEnv(incident), oc.first_messages(incident)
    for _ in range(limit):
        text = client.chat.completions.create(model="policy", messages=messages).choices[0].message.content
        messages.append({"role": "assistant", "content": text})
        action = json.loads(text)
        messages.append(oc.observation_message(env.call(action["tool"], action["args"])))
        if env.done:
            break
    return env.outcome()


def test_first_messages_carry_the_page_and_every_tool_but_no_answer():
    incident = first_of_kind("bad_deploy")
    system, page = oc.first_messages(incident)
    assert system["role"] == "system" and page == {"role": "user", "content": oc.describe(incident)}
    assert all(s["function"]["name"] in system["content"] for s in oc.TOOL_SCHEMAS)
    assert incident.kind not in page["content"] and incident.expected["version"] not in page["content"]
    observation = {"ok": True, "lines": [{"message": "x"}]}
    assert json.loads(oc.observation_message(observation)["content"][len(oc.OBSERVATION_PREFIX):]) == observation
    assert oc.error_message("not JSON")["content"].startswith(oc.ERROR_PREFIX)


def test_action_schema_accepts_each_tool_call_and_rejects_malformed_ones():
    import jsonschema

    validate = jsonschema.Draft202012Validator(oc.ACTION_SCHEMA).is_valid
    assert validate({"tool": "scale_service", "args": {"service": "search", "replicas": 6}})
    assert validate({"tool": "resolve", "args": {"summary": "false alarm"}})
    assert not validate({"tool": "scale_service", "args": {"service": "search", "replicas": "6"}})
    assert not validate({"tool": "reboot_everything", "args": {}})
    assert not validate({"tool": "rollback", "args": {"service": "search"}})
    assert not validate({"tool": "resolve", "args": {"summary": "x"}, "why": "extra"})


@pytest.mark.parametrize("split", ["dev", "heldout"])
def test_oracle_solves_every_incident_from_the_evidence_alone(split):
    for seed in range(3):
        for incident in oc.incidents(split, seed=seed):
            outcome = converse(oc.OracleClient(), incident)
            assert outcome["solved"] and outcome["harmful_attempts"] == 0, (incident.kind, outcome["reasons"])


def test_random_policy_is_a_low_floor_and_replies_like_the_openai_client():
    outcomes = [converse(oc.RandomClient(seed), incident) for seed in range(3) for incident in oc.incidents("dev")]
    assert sum(o["solved"] for o in outcomes) / len(outcomes) < 0.25
    reply = oc.RandomClient(1).chat.completions.create(model="x", messages=oc.first_messages(oc.incidents("dev")[0]))
    assert json.loads(reply.choices[0].message.content)["tool"] in {s["function"]["name"] for s in oc.TOOL_SCHEMAS}
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


class _ToolCallingServer:
    """A stand-in for a vLLM server with a tool-call parser: records requests, replies with tool calls."""

    def __init__(self, calls):
        self.calls, self.requests = list(calls), []
        self.chat = self.completions = self

    def create(self, **request):
        self.requests.append(request)
        name, arguments = self.calls.pop(0)
        function = type("Function", (), {"name": name, "arguments": arguments})()
        tool_calls = [type("ToolCall", (), {"function": function})()] if name else None
        message = type("Message", (), {"content": "" if name else arguments, "tool_calls": tool_calls})()
        usage = type("Usage", (), {"prompt_tokens": 50, "completion_tokens": 7})()
        return type("Reply", (), {"choices": [type("Choice", (), {"message": message})()], "usage": usage})()


def test_native_tool_calls_arrive_as_the_loops_json_actions():
    server = _ToolCallingServer([("get_service_status", '{"service": "auth"}'), ("scale_service", "{broken"),
                                 (None, "I would rather explain")])
    client = oc.NativeToolCalls(server)
    first = client.chat.completions.create(model="m", messages=[], response_format={"type": "json_object"})
    assert json.loads(first.choices[0].message.content) == {"tool": "get_service_status", "args": {"service": "auth"}}
    assert first.usage.prompt_tokens == 50 and first.usage.completion_tokens == 7
    sent = server.requests[0]
    assert sent["tools"] == oc.TOOL_SCHEMAS and sent["tool_choice"] == "required"
    assert "response_format" not in sent, "the parser shapes the call, not a schema"
    broken = json.loads(client.chat.completions.create(model="m", messages=[]).choices[0].message.content)
    assert broken == {"tool": "scale_service", "args": "{broken"}
    assert oc.check_arguments(broken["tool"], broken["args"])[1], "unparsable arguments are rejected"
    assert client.chat.completions.create(model="m", messages=[]).choices[0].message.content == "I would rather explain"
