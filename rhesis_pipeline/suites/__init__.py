"""Suite files: reading a YAML or JSON file of tests and refusing what is wrong in it.

A suite is validated whole before anything is stored: every problem is one line that
names the test, the key and the fix.
"""
