using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace OrasStaging.Commands.Completion;

/// <summary>
/// Completes <c>-Platform</c> with the os/arch[/variant] values that multi-platform images commonly carry.
/// Any other value is still accepted by the parameter; this only saves typing.
/// </summary>
public sealed class PlatformCompleter : IArgumentCompleter
{
    internal static readonly string[] CommonPlatforms =
    {
        "linux/amd64", "linux/arm64", "linux/arm/v7", "linux/riscv64", "linux/ppc64le", "linux/s390x", "windows/amd64",
    };

    public IEnumerable<CompletionResult> CompleteArgument(
        string commandName,
        string parameterName,
        string wordToComplete,
        CommandAst commandAst,
        IDictionary fakeBoundParameters)
    {
        var (quote, word) = CompletionText.Unquote(wordToComplete);
        return CommonPlatforms
            .Where(p => p.StartsWith(word, StringComparison.OrdinalIgnoreCase))
            .Select(p => CompletionText.Result(quote, p, p, p))
            .ToList();
    }
}
