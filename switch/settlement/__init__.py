"""Settlement: the networks' daily files imported and matched against what the switch recorded
(docs/settlement.md)."""
