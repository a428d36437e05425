"""Every validator refuses a bad answer with a message that says what to type, and renders nothing."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_copie.plugin import Copie

pytestmark = pytest.mark.matrix

BAD_ANSWERS = [
    ("project_name", "   ", "Type a name for the project"),
    ("project_name", "Orders\nAPI", "Type the name on one line"),
    ("description", "Two\nlines", "Type the description on one line"),
    ("package_name", "Orders-API", "Type a lower-case Python identifier"),
    ("package_name", "1orders", "Type a lower-case Python identifier"),
    ("package_name", "_orders", "Type a lower-case Python identifier"),
    ("package_name", "orders api", "Type a lower-case Python identifier"),
    ("package_name", "class", 'Type another name, for example class_service: "class" is a'),
    ("package_name", "jwt", 'for example jwt_service: "jwt" would shadow the standard-library'),
    ("package_name", "flask", '"flask" would shadow'),
    ("package_name", "fastapi", '"fastapi" would shadow'),
    ("package_name", "test", '"test" would shadow'),
    ("package_name", "json", '"json" would shadow'),
    ("author_email", "not-an-address", "Type an e-mail address such as dev@example.com"),
    ("author_email", "a@b", "Type an e-mail address such as dev@example.com"),
    ("access_token_minutes", 0, "Type a whole number of minutes from 1 to 1440"),
    ("access_token_minutes", 1441, "Type a whole number of minutes from 1 to 1440"),
    ("access_token_minutes", -5, "Type a whole number of minutes from 1 to 1440"),
    ("framework", "django", "Invalid choice"),
    ("jwt_algorithm", "none", "Invalid choice"),
    ("jwt_algorithm", "HS1", "Invalid choice"),
    ("refresh_strategy", "sometimes", "Invalid choice"),
    ("refresh_token_days", 0, "Type a whole number of days from 1 to 365"),
    ("refresh_token_days", 366, "Type a whole number of days from 1 to 365"),
]


@pytest.mark.parametrize(
    ("question", "answer", "message"),
    BAD_ANSWERS,
    ids=[f"{question}={answer!r}" for question, answer, _ in BAD_ANSWERS],
)
def test_bad_answer_is_refused_and_nothing_is_rendered(
    copie: Copie, question: str, answer: Any, message: str
) -> None:
    result = copie.copy(extra_answers={question: answer})
    assert result.exit_code != 0
    assert message in str(result.exception)
    assert result.project_dir is None
    rendered = [path for path in copie.test_dir.rglob("*") if path.is_file()]
    assert rendered == []


GOOD_ANSWERS = [
    ("project_name", "Orders API"),
    ("package_name", "orders_api2"),
    ("author_email", "dev@example.com"),
    ("author_email", ""),
    ("access_token_minutes", 1),
    ("access_token_minutes", 1440),
    ("framework", "flask"),
    ("jwt_algorithm", "HS512"),
    ("jwt_algorithm", "ES384"),
    ("jwt_algorithm", "Ed25519"),
    ("refresh_strategy", "stateless"),
    ("refresh_token_days", 1),
    ("refresh_token_days", 365),
    ("package_name", "app"),  # a common name; nothing it would shadow
]


@pytest.mark.parametrize(
    ("question", "answer"),
    GOOD_ANSWERS,
    ids=[f"{question}={answer!r}" for question, answer in GOOD_ANSWERS],
)
def test_good_answer_is_accepted_and_recorded(copie: Copie, question: str, answer: Any) -> None:
    result = copie.copy(extra_answers={question: answer})
    assert result.exit_code == 0, result.exception
    assert result.answers[question] == answer


def test_any_answer_text_renders_valid_code(copie: Copie) -> None:
    """Quotes, backslashes (`\\N{...}` is an escape in Python) and Unicode in the names."""
    name, description = 'Café "Orders" \\ API', "Back\\slash \\N{x}, 'quotes' & <tags>"
    result = copie.copy(extra_answers={"project_name": name, "description": description})
    assert result.exit_code == 0, result.exception
    assert result.project_dir is not None
    package = result.project_dir / "src" / result.answers["package_name"]
    namespace: dict[str, Any] = {}
    exec(compile((package / "__init__.py").read_text(), "__init__.py", "exec"), namespace)  # noqa: S102
    assert namespace["__doc__"] == f"{name}: {description}"
    assert namespace["TITLE"] == name


@pytest.mark.parametrize(
    ("project_name", "package_name"),
    [("Orders API", "orders_api"), ("123 Orders API!", "orders_api"), ("---", "service")],
)
def test_package_name_is_derived_from_the_project_name(
    copie: Copie, project_name: str, package_name: str
) -> None:
    result = copie.copy(extra_answers={"project_name": project_name})
    assert result.exit_code == 0, result.exception
    assert result.answers["package_name"] == package_name
    assert result.project_dir is not None
    assert (result.project_dir / "src" / package_name / "__init__.py").is_file()


def test_refresh_days_are_not_asked_without_a_strategy(copie: Copie) -> None:
    result = copie.copy(extra_answers={"refresh_strategy": "none"})
    assert result.exit_code == 0, result.exception
    assert "refresh_token_days" not in result.answers
    assert result.project_dir is not None
    assert "refresh_token_days" not in (result.project_dir / ".copier-answers.yml").read_text()
