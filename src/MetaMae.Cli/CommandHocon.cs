namespace MetaMae.Cli;

/// <summary>The command's Akka policy: what it logs, and that it (not the CLR's exit hook) decides when the system stops.</summary>
public static class CommandHocon
{
    public const string Text = """
        # The command stops the system itself after the run, after a final checkpoint on SIGINT/SIGTERM.
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        """;

    public static Akka.Configuration.Config Config => Akka.Configuration.ConfigurationFactory.ParseString(Text);
}
