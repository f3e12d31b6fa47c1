#!/usr/bin/env python3
"""Regenerates fixtures/users.json and fixtures/challenges.json deterministically.

users.json: 10,000 users `user-000001`... each with a token `<user id>.<16 hex>` (the
demo target reads the user from the part before the dot, like a JWT subject).
challenges.json: 10 challenges x 50 goals, as in the seed's load-test setup; each goal
counts one stat code up to a target value. stats.json: the 250 stat codes.
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

# 250 stat codes (25 stats x 10 modes); goal pairs share one, with different targets,
# so a stat update advances two goals, as tiered goals ("10 kills", "50 kills") do.
bases = ["matches_played", "wins", "kills", "headshots", "login_days", "quests_completed",
         "items_crafted", "distance_km", "assists", "revives", "deaths", "captures", "defuses",
         "plants", "heals", "damage_k", "xp_k", "gold_k", "levels", "trades", "invites",
         "parties", "emotes", "skins", "chests"]
modes = ["ranked", "casual", "coop", "solo", "duo", "squad", "arena", "raid", "event", "daily"]
stats = [f"{b}_{m}" for b in bases for m in modes]
challenges = []
for c in range(1, 11):
    goals = []
    for g in range(1, 51):
        i = (c - 1) * 50 + (g - 1)
        stat = stats[i // 2]
        target = [10, 50][i % 2]
        goals.append({"id": f"goal-{c:02d}-{g:02d}", "name": f"{stat.replace('_', ' ')} x{target}",
                      "stat_code": stat, "target": target})
    challenges.append({"id": f"challenge-{c:02d}", "name": f"Challenge {c}", "goals": goals})
with open(os.path.join(out, "challenges.json"), "w") as f:
    json.dump(challenges, f, indent=1)
    f.write("\n")
with open(os.path.join(out, "stats.json"), "w") as f:
    json.dump([{"code": s} for s in stats], f, indent=0)
    f.write("\n")

