//! Identifiers, amounts, hashes, keys and signatures, transactions, blocks and receipts, with one canonical bounded binary encoding.
