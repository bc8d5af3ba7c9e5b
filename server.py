"""WSGI entry point: ``gunicorn server:app`` serves production."""
from consent_widget import create_app

app = create_app()
