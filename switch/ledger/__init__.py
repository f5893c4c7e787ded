"""The double-entry ledger: postings as data, and the whole-ledger check.

Accounts (signed minor units: debit positive, credit negative):
    network:<name>:receivable     what a card network owes us for captured payments, less refunds
    merchant:<id>:payable         what we owe a merchant for captures not yet settled, less our fees: the
                                  balance's `pending` part
    merchant:<id>:available       what we owe a merchant for settled payments, less refunds and payouts: the
                                  balance's `available` part (negative when refunds outran it)
    platform:fees                 our fee revenue
    settlement:<name>:bank        what a network paid into our bank, net of its interchange fees
    expense:<name>:interchange    those fees; expense:<name>:settlement_differences: amounts written off
    payouts:clearing              payouts booked and not yet paid by the bank
    bank:payouts                  what our bank paid out to merchants (credit)
Postings, each summing to zero: ``capture:<payment>`` and ``fee:<payment>`` when a payment is captured
(or a sale approved); ``refund:<refund>`` when a refund succeeds; ``settle:<file>:<line>`` when a
settlement line matches, and ``release:<file>:<merchant>:<currency>``, the settled payments' net from
pending to available; ``unsettle:<file>:<line>`` and ``unrelease:...`` when a re-issued file supersedes
it; ``payout:<po>``, ``payout_paid:<po>``, ``payout_failed:<po>``.
"""
