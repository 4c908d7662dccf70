"""The built-in session of ``semcache demo``: what users of a support-and-coding
assistant ask, with repeats, paraphrases, and look-alike questions that mean something
else (which must not be served a cached answer).

Written for this project. Each question carries the intent it asks about, so the demo
can tell a right hit from a wrong one.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ANSWERS", "SESSION"]

#: intent -> the simulated LLM's answer.
ANSWERS: Final[dict[str, str]] = {
    "reset_password": (
        "Open Settings > Security and choose 'Reset password'. We email you a link that "
        "is valid for 30 minutes."
    ),
    "cancel_subscription": (
        "Go to Billing > Subscription and click 'Cancel plan'. You keep access until the "
        "end of the current billing period."
    ),
    "pause_subscription": (
        "Yes: Billing > Subscription > 'Pause' stops billing for up to three months and "
        "keeps your data."
    ),
    "upgrade_subscription": (
        "Billing > Subscription > 'Change plan'. The upgrade applies at once and you pay "
        "the prorated difference."
    ),
    "shipping_time": (
        "Standard shipping takes 3-5 business days; express arrives in 1-2 business days."
    ),
    "shipping_cost": (
        "Standard shipping is free over $50 and $4.99 below that; express costs $14.99."
    ),
    "refund": (
        "Orders can be refunded within 30 days: open Orders, pick the order and choose "
        "'Request refund'. The money is back in 5-7 days."
    ),
    "capital_australia": "Canberra is the capital of Australia.",
    "capital_austria": "Vienna is the capital of Austria.",
    "python_reverse_list": (
        "Use my_list.reverse() to reverse in place, or my_list[::-1] (or "
        "list(reversed(my_list))) for a reversed copy."
    ),
    "python_sort_list": (
        "Use my_list.sort() to sort in place or sorted(my_list) for a sorted copy; pass "
        "key= and reverse=True as needed."
    ),
    "api_rate_limits": (
        "The API allows 600 requests per minute per key and 10 concurrent requests; "
        "over that it answers 429 with a Retry-After header."
    ),
    "two_factor": (
        "Settings > Security > 'Two-factor authentication': scan the QR code with an "
        "authenticator app and enter the 6-digit code."
    ),
    "export_csv": (
        "Yes: Settings > Data > 'Export' creates a CSV of all your records and emails you "
        "a download link."
    ),
    "support_hours": "Support is available Monday to Friday, 8:00-20:00 CET, by chat and email.",
    "change_email": (
        "Settings > Profile > 'Email address'. We send a confirmation link to the new "
        "address before switching."
    ),
    "delete_account": (
        "Settings > Account > 'Delete account'. Deletion is permanent after a 14-day grace period."
    ),
    "python_requests_timeout": (
        "Pass timeout= to the call, e.g. requests.get(url, timeout=(3.05, 27)) for the "
        "connect and read timeouts."
    ),
    "sql_joins": (
        "An inner join keeps only rows that match in both tables; a left join keeps every "
        "row of the left table and fills the missing right side with NULL."
    ),
    "python_utc_to_local": (
        "dt.replace(tzinfo=timezone.utc).astimezone() converts a naive UTC datetime to "
        "the local time zone (use zoneinfo.ZoneInfo for a named one)."
    ),
}

#: The session, in order: (question, intent).
SESSION: Final[tuple[tuple[str, str], ...]] = (
    ("How do I reset my password?", "reset_password"),
    ("How do I cancel my subscription?", "cancel_subscription"),
    ("How long does shipping take?", "shipping_time"),
    ("I forgot my password. How can I reset it?", "reset_password"),
    ("What is the capital of Australia?", "capital_australia"),
    ("How do I reverse a list in Python?", "python_reverse_list"),
    ("how do I reset my password?", "reset_password"),
    ("Can I get a refund for my last order?", "refund"),
    ("How can I cancel my subscription?", "cancel_subscription"),
    ("Can I pause my subscription instead of cancelling?", "pause_subscription"),
    ("What are the API rate limits?", "api_rate_limits"),
    ("How much does shipping cost?", "shipping_cost"),
    ("What's the capital city of Australia?", "capital_australia"),
    ("What is the capital of Austria?", "capital_austria"),
    ("How do I enable two-factor authentication?", "two_factor"),
    ("Can I export my data to CSV?", "export_csv"),
    ("What's the easiest way to reverse a Python list?", "python_reverse_list"),
    ("How do I sort a list in Python?", "python_sort_list"),
    ("Is it possible to get a refund on my most recent order?", "refund"),
    ("How do I turn on two-factor authentication?", "two_factor"),
    ("What are your customer support hours?", "support_hours"),
    ("How do I change the email address on my account?", "change_email"),
    ("What is the rate limit of the API?", "api_rate_limits"),
    ("How do I delete my account?", "delete_account"),
    ("How long does shipping take?", "shipping_time"),
    ("How many days does shipping usually take?", "shipping_time"),
    ("How do I set a timeout for requests in Python?", "python_requests_timeout"),
    ("Is there a way to export my data to CSV?", "export_csv"),
    ("What hours is customer support open?", "support_hours"),
    ("How do I change my account email?", "change_email"),
    ("Cancel my subscription - how?", "cancel_subscription"),
    ("What is the difference between an inner join and a left join?", "sql_joins"),
    ("How do I add a timeout to a Python requests call?", "python_requests_timeout"),
    ("How can I permanently delete my account?", "delete_account"),
    ("Can I get my money back for my last order?", "refund"),
    ("Inner join vs left join: what's the difference?", "sql_joins"),
    ("How do I upgrade my subscription?", "upgrade_subscription"),
    ("How can I reset my password?", "reset_password"),
    ("What is the capital of Australia?", "capital_australia"),
    ("How do I convert a UTC datetime to local time in Python?", "python_utc_to_local"),
    ("How do I  Reverse a list in python?", "python_reverse_list"),
    ("When is customer support available?", "support_hours"),
)
