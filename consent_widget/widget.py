"""Placeholder while being written."""
from flask import Blueprint

bp = Blueprint("widget", __name__)
