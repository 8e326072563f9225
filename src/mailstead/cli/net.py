"""``mailstead net``: the host's interface addresses, now and after a reboot.

``show`` lists links and addresses (marking those outbound mail sends from),
``add``/``del`` change one address live and, with ``--persist``, in the
files the host's network manager reads; ``dhcp`` obtains a lease; ``apply``
makes the host match ``[[network.addresses]]``. The hidden ``--netns NAME``
runs the live part inside a network namespace (tests, image builders).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from mailstead.cli.common import Failure, config_path, echo_json, json_option, load, one_line_errors
from mailstead.netconfig import live

if TYPE_CHECKING:
    from mailstead.netconfig.persist import PersistResult

__all__ = ["net"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The managers ``--persist`` writes for; ``auto`` asks which controls the interface.
PERSIST_MANAGERS = ("auto", "ifupdown", "ifcfg", "nm", "netplan", "networkd")
#: The ``net dhcp --client`` choices (``mailstead.netconfig.dhcp.CLIENTS``, kept import-free).
DHCP_CLIENTS = ("auto", "dhclient", "dhcpcd")
_NETNS = "mailstead.netns"


def _net_errors(f: Callable[_P, _R]) -> Callable[_P, _R]:
    """A refused address change as the one-line failure of every command."""

    @functools.wraps(f)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return f(*args, **kwargs)
        except live.NetconfigError as exc:
            raise Failure(str(exc)) from None

    return wrapper


def _netns(ctx: click.Context) -> str | None:
    name: str | None = ctx.meta.get(_NETNS)
    return name


@click.group()
@click.option(
    "--netns",
    metavar="NAME",
    hidden=True,
    help="Work inside network namespace NAME (ip netns add NAME) instead of the host's.",
)
@click.pass_context
def net(ctx: click.Context, netns: str | None) -> None:
    """Interface addresses: list, add, remove, persist, DHCP.

    \b
    Example:
      mailstead net show
      mailstead net add eth0 192.0.2.25/24 --label eth0:1 --persist auto
    """
    ctx.meta[_NETNS] = netns


def _mail_addresses(ctx: click.Context) -> set[str]:
    # ``net show`` works on a host without a configuration; it then marks nothing.
    if not config_path(ctx).exists():
        return set()
    from mailstead.netconfig.apply import mail_addresses

    return {str(ipaddress.ip_address(a)) for a in mail_addresses(load(ctx, as_root=True))}


def _lifetimes(address: live.InterfaceAddress) -> str:
    out = ""
    if address.valid_lifetime is not None:
        out += f" valid {address.valid_lifetime}s"
    if address.preferred_lifetime is not None:
        out += f" preferred {address.preferred_lifetime}s"
    return out


@net.command("show")
@json_option
@click.pass_context
@one_line_errors
@_net_errors
def show(ctx: click.Context, as_json: bool) -> None:
    """List links and their addresses; [mail] marks the ones outbound mail uses.

    \b
    Example:
      mailstead net show
      mailstead net show --json
    """
    netns = _netns(ctx)
    mail = _mail_addresses(ctx)
    links = live.links(netns=netns)
    addresses = live.addresses(netns=netns)
    present = {a.address for a in addresses}
    missing = sorted(mail - present)
    if as_json:
        echo_json(
            {
                "links": [
                    {
                        **link.to_json(),
                        "addresses": [
                            {**a.to_json(), "mail": a.address in mail}
                            for a in addresses
                            if a.index == link.index
                        ],
                    }
                    for link in links
                ],
                "mail_missing": missing,
            }
        )
        return
    for link in links:
        mac = f" {link.mac}" if link.mac else ""
        click.echo(f"{link.index}: {link.name} {link.kind} {link.state} mtu {link.mtu}{mac}")
        for a in (a for a in addresses if a.index == link.index):
            label = f" label {a.label}" if a.label and a.label != link.name else ""
            flags = "".join(f" {flag}" for flag in a.flags if flag != "permanent")
            marked = "  [mail]" if a.address in mail else ""
            click.echo(
                f"    {a.family} {a.cidr} scope {a.scope}{label}{flags}{_lifetimes(a)}{marked}"
            )
    for address in missing:
        click.echo(f"mail sends from {address}, which is on no interface")


_persist_option = click.option(
    "--persist",
    type=click.Choice(PERSIST_MANAGERS),
    help="Also write it where this network manager reads it at boot (auto: the one in charge).",
)
_root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Write the persistent files into this tree (an image being built): the address"
    " then goes only into its files, not onto this host's interface.",
)
_dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Change nothing; say what would change and show the file diff."
)


def _persisted(result: PersistResult, dry_run: bool) -> None:
    click.echo(f"persist: {result.reason}")
    for note in result.notes:
        click.echo(f"persist: {note}")
    if not result.files:
        click.echo("persist: the files hold it already: nothing to do")
    elif dry_run:
        click.echo(result.diff, nl=False)
    else:
        for path, before, after in result.files:
            done = "removed" if after is None else "created" if before is None else "changed"
            click.echo(f"{done} {path}")


def _changes_live(ctx: click.Context, root: Path) -> bool:
    """Whether to change the interface now: not when --root names another tree
    (an image being built), unless --netns names the namespace to change."""
    return root == Path("/") or _netns(ctx) is not None


def _checked(cidr: str, persist: str | None, root: Path) -> str:
    if persist is None and root != Path("/"):
        raise Failure("--root names where --persist writes: give --persist too")
    return str(live.parse_cidr(cidr))


@net.command("add")
@click.argument("iface")
@click.argument("cidr")
@click.option("--label", help="IPv4 label, the old alias name: IFACE:N.")
@_persist_option
@_dry_run_option
@_root_option
@click.pass_context
@one_line_errors
@_net_errors
def add(
    ctx: click.Context,
    iface: str,
    cidr: str,
    label: str | None,
    persist: str | None,
    dry_run: bool,
    root: Path,
) -> None:
    """Put CIDR on IFACE now (a no-op if it is there), and with --persist after a reboot.

    \b
    Example:
      mailstead net add eth0 192.0.2.25/24 --label eth0:1 --persist auto --dry-run
      mailstead net add eth0 192.0.2.25/24 --label eth0:1 --persist auto
    """
    wanted = _checked(cidr, persist, root)
    from mailstead.netconfig.persist import persist_address

    if persist is not None:
        # A plan that cannot be written fails here, before the live change.
        persist_address(iface, wanted, label=label, manager=persist, root=root, dry_run=True)
    if _changes_live(ctx, root):
        outcome = live.add_address(iface, wanted, label=label, netns=_netns(ctx), dry_run=dry_run)
        click.echo(outcome.message)
    else:
        click.echo(f"{root} is not this host's root: the address is only persisted")
    if persist is not None:
        result = persist_address(
            iface, wanted, label=label, manager=persist, root=root, dry_run=dry_run
        )
        _persisted(result, dry_run)


@net.command("del")
@click.argument("iface")
@click.argument("cidr")
@_persist_option
@_dry_run_option
@_root_option
@click.pass_context
@one_line_errors
@_net_errors
def delete(
    ctx: click.Context, iface: str, cidr: str, persist: str | None, dry_run: bool, root: Path
) -> None:
    """Take CIDR off IFACE now (a no-op if it is not there), and with --persist from the files.

    \b
    Example:
      mailstead net del eth0 192.0.2.25/24 --persist auto
    """
    wanted = _checked(cidr, persist, root)
    from mailstead.netconfig.persist import remove_address

    if persist is not None:
        # A plan that cannot be written fails here, before the live change.
        remove_address(iface, wanted, manager=persist, root=root, dry_run=True)
    if _changes_live(ctx, root):
        outcome = live.delete_address(iface, wanted, netns=_netns(ctx), dry_run=dry_run)
        click.echo(outcome.message)
    else:
        click.echo(f"{root} is not this host's root: the address is only removed from its files")
    if persist is not None:
        result = remove_address(iface, wanted, manager=persist, root=root, dry_run=dry_run)
        _persisted(result, dry_run)


@net.command("dhcp")
@click.argument("iface")
@click.option("--release", is_flag=True, help="Give the lease back and remove its address.")
@click.option(
    "--client",
    type=click.Choice(DHCP_CLIENTS),
    default="auto",
    show_default=True,
    help="The DHCP client to run (auto: the interface's manager, else dhclient, else dhcpcd).",
)
@json_option
@click.pass_context
@one_line_errors
@_net_errors
def dhcp(ctx: click.Context, iface: str, release: bool, client: str, as_json: bool) -> None:
    """Obtain a DHCP lease on IFACE, as dhclient does; says first what it will change.

    \b
    Example:
      mailstead net dhcp eth1
      mailstead net dhcp eth1 --release
    """
    from mailstead.netconfig.dhcp import obtain_lease, planned_changes

    netns = _netns(ctx)
    # Before anything runs: with --json the plan goes to stderr, stdout holds only JSON.
    for line in planned_changes(iface, release=release, client=client, netns=netns):
        click.echo(f"plan: {line}", err=as_json)
    lease = obtain_lease(iface, release=release, client=client, netns=netns)
    if as_json:
        echo_json(lease.to_json())
        return
    verb = "released" if release else "leased"
    click.echo(f"{verb} {lease.cidr} on {iface} from {lease.server or 'the server'}")
    click.echo(f"router: {lease.router or '-'}")
    click.echo(f"dns: {' '.join(lease.dns) or '-'}")
    click.echo(f"lease time: {lease.lease_time}s")
    click.echo(f"client: {lease.client}")


@net.command("apply")
@_dry_run_option
@_root_option
@json_option
@click.pass_context
@one_line_errors
@_net_errors
def apply_command(ctx: click.Context, dry_run: bool, root: Path, as_json: bool) -> None:
    """Make the host carry every [[network.addresses]]; never removes what it did not add.

    \b
    Example:
      mailstead net apply --dry-run
      mailstead net apply
    """
    from mailstead.netconfig.apply import apply

    config = load(ctx, as_root=True)
    report = apply(config.network.addresses, dry_run=dry_run, netns=_netns(ctx), root=root)
    if as_json:
        echo_json(report.to_json())
    else:
        click.echo(report.to_text(), nl=False)
    if not report.ok:
        failed = sum(item.status in ("differs", "error") for item in report.items)
        raise Failure(f"{failed} declared address(es) differ from the host or failed")
