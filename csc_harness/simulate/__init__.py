"""Interactive evaluation: whole conversations with a role-played customer (RoleCS's way).

Scenarios (a planner writes persona and goal from a recorded dialogue, or a user's file)
→ conversations (customer coach + customer roles, the candidate as supporter, all through
the one provider client) → ``transcripts.jsonl`` → conversation-level judging with the
judge runner → automatic conversation metrics, leaderboard and report.
"""

from .conversation import Cast, conversation_id, converse
from .judging import ConversationItem, conversation_candidates, judge_transcripts
from .metrics import METRICS, conversation_metrics, metric_table
from .roles import RoleModel
from .run import DEMO, SimulateOptions, simulate, simulate_conversations
from .scenarios import Scenario, ScenarioStore, load_scenarios_file, plan_scenarios
from .store import TranscriptStore

__all__ = [
    "DEMO", "METRICS", "Cast", "ConversationItem", "RoleModel", "Scenario", "ScenarioStore",
    "SimulateOptions", "TranscriptStore", "conversation_candidates", "conversation_id",
    "conversation_metrics", "converse", "judge_transcripts", "load_scenarios_file",
    "metric_table", "plan_scenarios", "simulate", "simulate_conversations",
]
