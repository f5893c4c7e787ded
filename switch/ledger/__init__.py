"""The double-entry ledger: postings as data, and the whole-ledger check.

Accounts (signed minor units: debit positive, credit negative):
    network:<name>:receivable    what a card network owes us for captured payments, less refunds
    merchant:<id>:payable        what we owe a merchant: captures, less fees and refunds
    platform:fees                our fee revenue
Postings, each summing to zero: ``capture:<payment>`` and ``fee:<payment>`` when a payment is captured
(or a sale approved), ``refund:<refund>`` when a refund succeeds.
"""
