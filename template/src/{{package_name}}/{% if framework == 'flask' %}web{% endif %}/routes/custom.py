"""Your own routes: add them to `bp`; `create_app` registers it. Made once by `copier copy`;
`copier update` never changes this file (README, "Protecting your own routes")."""

from flask import Blueprint

bp = Blueprint("custom", __name__)
