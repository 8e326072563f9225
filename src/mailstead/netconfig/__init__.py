"""The host's own interface addresses: live changes over netlink, DHCP, persistence.

Named ``netconfig`` so it does not clash with ``net/``, which holds the socket
sessions. ``live`` reads and changes what the kernel has now; the other
modules make it survive a reboot and tie it to outbound mail.
"""
