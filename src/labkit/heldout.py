"""The held-out sets the labs are scored on: their wordings, and the keys their items are drawn from.

- Lab 05 (``labkit.finetune``, split ``test_unseen``): request templates and service aliases
  that train, dev and test never use, to measure whether a tuned model generalises.
- Lab 06 (``labkit.oncall``, split ``heldout``): alert wordings that the dev incidents never use.

The generators live in those modules; only what makes these sets the instructor's lives
here, in one file, so that the public course can leave it out. ``labkit public-tree`` writes
a stand-in of the same shape in this file's place (``labkit/course/public_heldout.py``): the
labs run the same there, on held-out items that are not the ones the course is graded on.

No lab may print anything from this module, nor a held-out item built from it.
"""
from __future__ import annotations

EDITION = "instructor"  # the public stand-in says "public"

# --- lab 05: requests phrased as no other split phrases them -----------------------------

UNSEEN_SEED_KEY = "unseen"  # test_unseen draws from random.Random(f"{UNSEEN_SEED_KEY}-{seed}")
UNSEEN_TEMPLATES = {
    "search_logs": [
        "find {level} in {service} logs from the past {duration}",
        "{service}: list {level}, last {duration}",
    ],
    "restart_service": [
        "please reboot {service} pods in {region}",
        "{region}: {service} needs a restart",
    ],
    "scale_service": [
        "increase {service} to {replicas} replicas",
        "change the replica count of {service} to {replicas}",
    ],
    "rollback": [
        "undo the last deploy of {service}, back to {version}",
        "downgrade {service} to {version}",
    ],
    "page_oncall": [
        "notify {team} on-call, {urgency}",
        "we need {team} here, {urgency}",
    ],
}
UNSEEN_SERVICE_ALIASES = {
    "checkout": ["checkout-api", "the basket service"],
    "payments": ["payments-svc", "the billing service"],
    "search": ["search-api", "the search service"],
    "auth": ["auth-svc", "the sso service"],
    "inventory": ["inventory-api", "the stock api"],
}

# --- lab 06: alerts worded as the dev incidents never word them ---------------------------

ONCALL_SEED_KEY = "heldout"  # incidents draw from random.Random(f"oncall-incidents:{ONCALL_SEED_KEY}:{seed}")
_ERRORS = ("FIRING: HighErrorRate service={service} region={region} value={value}",
           "Customers report failures on {service}; dashboards show {value} of requests failing")
_LATENCY = ("FIRING: LatencySLOBreach service={service} region={region} p95={value}",
            "Support ticket: pages backed by {service} take seconds to load ({value} p95)")
_RESTARTS = ("FIRING: KubePodCrashLooping service={service} region={region} restarts={value}",
             "Status check: {service} keeps going up and down, {value} restarts seen")
# kind -> wordings; as in dev, one symptom's wordings serve every kind that shows it
ONCALL_ALERT_TEMPLATES = {"bad_deploy": _ERRORS, "crash_loop": _RESTARTS, "load_spike": _LATENCY,
                          "dependency_outage": _ERRORS, "false_alarm": _LATENCY}
