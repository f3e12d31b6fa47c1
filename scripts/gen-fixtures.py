#!/usr/bin/env python3
"""Regenerates fixtures/users.json and fixtures/challenges.json deterministically.

users.json: 10,000 users `user-000001`... each with a token `<user id>.<16 hex>` (the
demo target reads the user from the part before the dot, like a JWT subject).
challenges.json: 10 challenges x 50 goals, as in the seed's load-test setup; each goal
counts one stat code up to a target value.
"""
import hashlib, json, os

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "fixtures")

users = []
for i in range(1, 10001):
    uid = f"user-{i:06d}"
    sig = hashlib.sha256(f"soakd-demo:{uid}".encode()).hexdigest()[:16]
    users.append({"id": uid, "token": f"{uid}.{sig}", "namespace": "test"})
with open(os.path.join(out, "users.json"), "w") as f:
    json.dump(users, f, separators=(",", ":"))
    f.write("\n")

stats = ["matches_played", "wins", "kills", "headshots", "login_days",
         "quests_completed", "items_crafted", "distance_km", "assists", "revives"]
challenges = []
for c in range(1, 11):
    goals = []
    for g in range(1, 51):
        stat = stats[(c * 7 + g) % len(stats)]
        target = [1, 3, 5, 10, 25, 50, 100][(c + g) % 7]
        goals.append({"id": f"goal-{c:02d}-{g:02d}", "name": f"{stat.replace('_', ' ')} x{target}",
                      "stat_code": stat, "target": target})
    challenges.append({"id": f"challenge-{c:02d}", "name": f"Challenge {c}", "goals": goals})
with open(os.path.join(out, "challenges.json"), "w") as f:
    json.dump(challenges, f, indent=1)
    f.write("\n")
