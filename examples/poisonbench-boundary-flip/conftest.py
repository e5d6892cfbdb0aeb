"""Lets the tests import the plugin module from a checkout, installed or not (pytest puts this
file's folder on sys.path)."""
