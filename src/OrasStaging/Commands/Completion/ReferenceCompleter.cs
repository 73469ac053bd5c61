using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace OrasStaging.Commands.Completion;

/// <summary>
/// Completes the tag of <c>-Reference</c> from the registry's tag list (<c>GET /v2/&lt;name&gt;/tags/list</c>):
/// <c>oras://ghcr.io/safl/nosi/debian-bookworm-amd64:&lt;Tab&gt;</c>. Best effort: anonymous or an anonymous
/// bearer token only, about two seconds at most, no retries, and silent on any failure, because a completer that
/// throws or hangs breaks the prompt.
/// </summary>
public sealed class ReferenceCompleter : IArgumentCompleter
{
    /// <summary>The whole budget for one completion, network included.</summary>
    internal static TimeSpan Budget { get; set; } = TimeSpan.FromSeconds(2);

    public IEnumerable<CompletionResult> CompleteArgument(
        string commandName,
        string parameterName,
        string wordToComplete,
        CommandAst commandAst,
        IDictionary fakeBoundParameters)
    {
        var (quote, word) = CompletionText.Unquote(wordToComplete);
        if (!TagQuery.TryParse(word, out var query))
        {
            return Array.Empty<CompletionResult>();
        }

        IReadOnlyList<string> tags;
        using var budget = new CancellationTokenSource(Budget);
        var listing = Task.Run(() => RegistryTagLister.ListTagsAsync(query, budget.Token), budget.Token);
        try
        {
            // A bounded wait, not GetResult: whatever the listing does, the prompt gets control back in time.
            if (!listing.Wait(Budget + TimeSpan.FromMilliseconds(250)))
            {
                budget.Cancel();
                _ = listing.ContinueWith(t => t.Exception, TaskScheduler.Default); // observe a late failure
                return Array.Empty<CompletionResult>();
            }

            tags = listing.Result;
        }
        catch (Exception)
        {
            return Array.Empty<CompletionResult>();
        }

        return query.Offer(quote, tags)
            .Select(o => CompletionText.Result(string.Empty, o.Text, o.Tag, o.Text.Trim(o.Text[0])))
            .ToList();
    }
}
