using Akka.Actor;
using Akka.Event;
using MetaMae.Data;
using MetaMae.Protocol;

namespace MetaMae.Actors;

/// <summary>
/// Base of the actors that hold other actors' work (the learner, data and evaluator hosts, the probe scheduler, the
/// run manager): an error in one of their handlers is logged with the message it was handling, never a failure, since
/// a restart by their supervisor would drop every run they hold. A request whose asker waits for an answer is
/// answered with the failure (<see cref="Refuse"/>), so no run waits forever on a message that failed here.
/// </summary>
public abstract class SteadyActor : ReceiveActor
{
    protected override bool AroundReceive(Receive receive, object message)
    {
        try
        {
            return base.AroundReceive(receive, message);
        }
        catch (Exception e)
        {
            Context.GetLogger().Error(e, "{0}: {1} while handling {2}", GetType().Name, e.Message, message.GetType().Name);
            try
            {
                Refuse(message, Failures.Describe(e));
            }
            catch (Exception again)
            {
                Context.GetLogger().Error(again, "{0}: could not answer the failed {1}", GetType().Name, message.GetType().Name);
            }
            return true;
        }
    }

    /// <summary>Tells whoever waits on <paramref name="message"/> that handling it failed with <paramref name="reason"/>; by default no one waits.</summary>
    protected virtual void Refuse(object message, string reason)
    {
    }
}

/// <summary>How a failure is named in a run's error, its record and its report.</summary>
internal static class Failures
{
    /// <summary>The message alone for errors that name their cause; the type too for the rest.</summary>
    public static string Describe(Exception e) => e switch
    {
        AggregateException { InnerExceptions.Count: 1 } a => Describe(a.InnerExceptions[0]),
        IOException or UnauthorizedAccessException or ArgumentException or FormatException or InvalidDataException
            or DataLayoutException or FailPointException or InvalidOperationException => e.Message,
        _ => $"{e.GetType().Name}: {e.Message}",
    };
}
