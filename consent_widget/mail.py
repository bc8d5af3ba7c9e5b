"""Placeholder while being written."""


def queue_confirmation(session, campaign, subject, signup):
    pass


def queue_receipt(session, campaign, subject, receipt, locale):
    pass
