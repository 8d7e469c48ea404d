"""Teams (user groups, service pools): members, extension, ring strategy, queue. Data only:
call distribution behaviour comes in a later issue."""
