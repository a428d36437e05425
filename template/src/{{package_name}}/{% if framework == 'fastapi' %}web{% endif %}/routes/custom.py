"""Your own routes: add them to `router`; `create_app` includes it. Made once by `copier copy`;
`copier update` never changes this file (README, "Protecting your own routes")."""

from fastapi import APIRouter

router = APIRouter()
