"""Which new passwords are refused, after NIST SP 800-63B section 5.1.1.2.

No composition rules (a digit, a symbol, an upper-case letter): they make passwords harder to
remember, not to guess. A new password is refused when it contains the user's own name, or
when zxcvbn, which knows common passwords, words, names, keyboard patterns, dates and
substitutions, scores it below `PASSWORD_MIN_STRENGTH` (0-4). The refusal says what to do.

zxcvbn scores the first `ZXCVBN_MAX_CHARS` characters only: its time grows much faster than the
length (a long string of look-alike symbols such as `4@(<1|` takes seconds, its first 32
characters milliseconds) and checks run one at a time, so a long password must not be a way to
hold every other registration up. The rest of a longer password neither raises nor lowers its
score: its start alone must be hard to guess. The name rule reads the whole password. Callers
check before they wait for a hashing slot (`PasswordHasher.admitted`): a check never holds one.
"""

from __future__ import annotations

import threading

import zxcvbn

from .errors import ServiceUnavailable, WeakPassword
from .passwords import normalise

#: How many characters zxcvbn scores, from the start of the password (module docstring).
ZXCVBN_MAX_CHARS = 32

#: The advice when zxcvbn gives none (it gives none for scores 3 and 4).
ADVICE = "Add another word or two. Uncommon words are better."

#: Names shorter than this are not looked for in passwords: they are in too many by chance.
MIN_NAME_CHARS = 3

#: zxcvbn keeps each call's `user_inputs` in a module-level dictionary that every call shares,
#: so two checks at once could each score against the other's names: one at a time.
_zxcvbn_lock = threading.Lock()

#: How long a check waits for its turn. Checks take tens of milliseconds at most, so a longer
#: wait means a crowd: the request is refused (503) rather than holding a worker thread, which
#: the service's database reads need too.
ZXCVBN_WAIT_SECONDS = 1.0

BUSY = "Too many passwords are being checked at once; try again in a second."


class PasswordPolicy:
    """Refuses easily guessed new passwords with `WeakPassword`; `min_strength` 0 checks only
    that the password does not contain the user's names."""

    def __init__(self, min_strength: int) -> None:
        if not 0 <= min_strength <= 4:
            raise ValueError("min_strength is a zxcvbn score: 0 to 4")
        self.min_strength = min_strength

    def check(self, password: str, *, username: str, email: str | None = None) -> None:
        """Raise `WeakPassword` if `password` is not good enough for this user."""
        password = normalise(password)
        folded = password.casefold()
        local_part = (email.rpartition("@")[0] or email) if email else None
        names = [("your username", username), ("the name of your e-mail address", local_part)]
        for what, name in names:
            key = normalise(name or "").casefold()
            if len(key) >= MIN_NAME_CHARS and key in folded:
                raise WeakPassword(
                    f"This password contains {what}, which makes it easy to guess; "
                    f"choose one without it."
                )
        if self.min_strength == 0:
            return
        user_inputs = [name for name in (username, email, local_part) if name]
        if not _zxcvbn_lock.acquire(timeout=ZXCVBN_WAIT_SECONDS):
            raise ServiceUnavailable(BUSY, retry_after=1)
        try:
            result = zxcvbn.zxcvbn(password[:ZXCVBN_MAX_CHARS], user_inputs=user_inputs)
        finally:
            _zxcvbn_lock.release()
        if result["score"] < self.min_strength:
            feedback = result["feedback"]
            raise WeakPassword(_too_easy(feedback["warning"], feedback["suggestions"]))


def _too_easy(warning: str, suggestions: list[str]) -> str:
    """The refusal for a low score, with zxcvbn's warning and first suggestion."""
    advice = [_sentence(text) for text in (warning, (suggestions or [ADVICE])[0]) if text]
    return "This password is too easy to guess: " + " ".join(advice)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."
