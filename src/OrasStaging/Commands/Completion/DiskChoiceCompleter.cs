using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using OrasStaging.Oci;

namespace OrasStaging.Commands.Completion;

/// <summary>
/// Completes -DiskType (the disktype annotations or platform.os disk types of the index) and -DiskName (the
/// io.kubevirt.disk.name annotations of the manifest) from the artifact that -Reference names. Best effort, as
/// <see cref="ReferenceCompleter"/>: anonymous, no retries, within the same budget, silent on any failure.
/// </summary>
public abstract class DiskChoiceCompleter : IArgumentCompleter
{
    private protected abstract IReadOnlyList<string> Pick(RegistryClient.DiskChoices choices);

    public IEnumerable<CompletionResult> CompleteArgument(
        string commandName,
        string parameterName,
        string wordToComplete,
        CommandAst commandAst,
        IDictionary fakeBoundParameters)
    {
        var (quote, word) = CompletionText.Unquote(wordToComplete);
        string? text = fakeBoundParameters["Reference"] switch
        {
            string s => s,
            string[] { Length: > 0 } a => a[0],
            object[] { Length: > 0 } a => a[0]?.ToString(),
            _ => null,
        };
        if (text is null || !ImageReference.TryParse(text, out var reference, out _) || reference is null)
        {
            return Array.Empty<CompletionResult>();
        }

        string? platform = fakeBoundParameters["Platform"] as string;
        string? diskType = fakeBoundParameters["DiskType"] as string;
        var budget = ReferenceCompleter.Budget;
        using var cts = new CancellationTokenSource(budget);
        var client = new RegistryClient(new RegistryOptions { MaximumRetryCount = 0, Anonymous = true, CacheServer = string.Empty }, NullOperationSink.Instance);
        var listing = Task.Run(() => client.ListDiskChoicesAsync(reference, platform, diskType, cts.Token), cts.Token);
        IReadOnlyList<string> values;
        try
        {
            if (!listing.Wait(budget + TimeSpan.FromMilliseconds(250)))
            {
                cts.Cancel();
                _ = listing.ContinueWith(t => t.Exception, TaskScheduler.Default);
                return Array.Empty<CompletionResult>();
            }

            values = Pick(listing.Result);
        }
        catch (Exception)
        {
            return Array.Empty<CompletionResult>();
        }

        return values.Where(v => v.StartsWith(word, StringComparison.OrdinalIgnoreCase))
            .Select(v => CompletionText.Result(quote.Length > 0 || v.Any(c => char.IsWhiteSpace(c) || c is '\'' or '"' or '$' or '`') ? (quote.Length > 0 ? quote : "'") : string.Empty, v, v, v))
            .ToList();
    }
}

/// <summary>-DiskType: qemu, applehv, hyperv (podman machine-os), qemu, metal, azure… (CoreOS), as the index has them.</summary>
public sealed class DiskTypeCompleter : DiskChoiceCompleter
{
    private protected override IReadOnlyList<string> Pick(RegistryClient.DiskChoices choices) => choices.DiskTypes;
}

/// <summary>-DiskName: the io.kubevirt.disk.name values of a KubeVirt disk artifact.</summary>
public sealed class DiskNameCompleter : DiskChoiceCompleter
{
    private protected override IReadOnlyList<string> Pick(RegistryClient.DiskChoices choices) => choices.DiskNames;
}
