"""The held-out sets the labs are scored on, in the public edition of the course: stand-ins.

- Lab 05 (``labkit.finetune``, split ``test_unseen``): request templates and service aliases
  that train, dev and test never use, to measure whether a tuned model generalises.
- Lab 06 (``labkit.oncall``, split ``heldout``): alert wordings that the dev incidents never use.

The course's instructors grade on sets of their own, kept in their repository and never
published. These have the same shape and play the same part, so every lab runs the same
here: the model and the agent still meet requests and alerts they were not built on. Reading
this file spoils only your own measurement; build on dev, then score once on held-out.
"""
from __future__ import annotations

EDITION = "public"  # the instructor's module says "instructor"

# --- lab 05: requests phrased as no other split phrases them -----------------------------

UNSEEN_SEED_KEY = "public-unseen"  # test_unseen draws from random.Random(f"{UNSEEN_SEED_KEY}-{seed}")
UNSEEN_TEMPLATES = {
    "search_logs": [
        "check {service} for {level} during the previous {duration}",
        "dump the {level} of {service} for the previous {duration}",
    ],
    "restart_service": [
        "cycle the {service} pods in {region}",
        "{service} in {region} has hung, give it a fresh start",
    ],
    "scale_service": [
        "give {service} {replicas} replicas",
        "{service} should run on {replicas} instances",
    ],
    "rollback": [
        "take {service} back to {version}",
        "the new {service} build is bad, restore {version}",
    ],
    "page_oncall": [
        "call in {team}, {urgency}",
        "{team} should take a look, {urgency}",
    ],
}
UNSEEN_SERVICE_ALIASES = {
    "checkout": ["checkout-web", "the order service"],
    "payments": ["pay-gateway", "the payment processor"],
    "search": ["search-frontend", "the query service"],
    "auth": ["identity-svc", "the identity provider"],
    "inventory": ["stock-svc", "the inventory backend"],
}

# --- lab 06: alerts worded as the dev incidents never word them ---------------------------

ONCALL_SEED_KEY = "public-heldout"  # incidents draw from random.Random(f"oncall-incidents:{ONCALL_SEED_KEY}:{seed}")
_ERRORS = ("Alertmanager: ErrorBudgetBurn for {service} in {region}, {value} of requests are 5xx",
           "Synthetic probe: {value} of {service} calls return errors ({region})")
_LATENCY = ("Alertmanager: SlowResponses for {service} in {region}, p95 {value}",
            "Synthetic probe: {service} answers in {value} at p95 ({region})")
_RESTARTS = ("Alertmanager: PodRestartStorm for {service} in {region}, {value} restarts",
             "Synthetic probe: {service} flaps in {region}, {value} container restarts")
# kind -> wordings; as in dev, one symptom's wordings serve every kind that shows it
ONCALL_ALERT_TEMPLATES = {"bad_deploy": _ERRORS, "crash_loop": _RESTARTS, "load_spike": _LATENCY,
                          "dependency_outage": _ERRORS, "false_alarm": _LATENCY}
