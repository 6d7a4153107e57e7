# The Back Office's times to the second, ISO 8601 in every language (refunds.admin.display.when
# writes the audit columns the same way); everything else is Django's own format for the language.
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
