"""What a slide case leaves behind: JSON report, case page and index, and the audit replay of a report."""
