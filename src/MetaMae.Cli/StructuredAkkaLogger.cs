using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;
using Akka.Hosting.Logging;
using Microsoft.Extensions.Logging;

namespace MetaMae.Cli;

/// <summary>
/// Akka's log events as structured Microsoft.Extensions.Logging entries, for `--log-format json`: the entry's message is
/// the event's own text (no "[INFO][time][Thread][source]" prefix inside it), its category the logging class, and its
/// state carries the actor path (<c>Source</c>) and the thread, so a log collector can filter on them. Akka.Hosting's
/// own logger puts the whole prefixed line in the message and leaves the state empty.
/// </summary>
public sealed class StructuredAkkaLogger : ActorBase, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    private readonly ILoggerFactory factory;
    private readonly Dictionary<Type, ILogger> loggers = [];

    public StructuredAkkaLogger()
    {
        var setup = Context.System.Settings.Setup.Get<LoggerFactorySetup>();
        if (!setup.HasValue) throw new InvalidOperationException("the actor system has no LoggerFactorySetup (Akka.Hosting adds it)");
        factory = setup.Value.LoggerFactory;
    }

    protected override bool Receive(object message)
    {
        switch (message)
        {
            case InitializeLogger:
                Sender.Tell(new LoggerInitialized());
                return true;
            case LogEvent e:
                Write(e);
                return true;
            default:
                return false;
        }
    }

    private void Write(LogEvent e)
    {
        // Events logged under a string source (remoting, the cluster) carry Akka's placeholder class: category "Akka".
        var type = e.LogClass is null || e.LogClass.Name == "DummyClassForStringSources" ? typeof(ActorSystem) : e.LogClass;
        if (!loggers.TryGetValue(type, out var logger))
            loggers[type] = logger = factory.CreateLogger(type == typeof(ActorSystem) ? "Akka" : type.FullName ?? type.Name);
        var level = e.LogLevel() switch
        {
            Akka.Event.LogLevel.DebugLevel => Microsoft.Extensions.Logging.LogLevel.Debug,
            Akka.Event.LogLevel.InfoLevel => Microsoft.Extensions.Logging.LogLevel.Information,
            Akka.Event.LogLevel.WarningLevel => Microsoft.Extensions.Logging.LogLevel.Warning,
            _ => Microsoft.Extensions.Logging.LogLevel.Error,
        };
        if (!logger.IsEnabled(level)) return;
        var text = e.Message?.ToString() ?? "";
        var state = new State(text) { new("Source", e.LogSource), new("Thread", e.Thread.ManagedThreadId) };
        logger.Log(level, default, state, (e as Error)?.Cause, (_, _) => text);
    }

    /// <summary>The entry's properties; its text as the state's own message (JSON console writes State.Message from it).</summary>
    private sealed class State(string text) : List<KeyValuePair<string, object?>>
    {
        public override string ToString() => text;
    }
}
