"""The quarterly effectiveness review: which quarter (quarters), its evaluation tables (tables), the
uplift and scheme checks they use (uplift), and the HTML report (html)."""
