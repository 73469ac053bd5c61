using System.Management.Automation;

namespace OrasStaging.Commands.Completion;

/// <summary>What the completers share: the user's quote is kept around what they typed.</summary>
internal static class CompletionText
{
    /// <summary>Splits a leading quote off the word being completed ("'oras://..." → ("'", "oras://...")).</summary>
    public static (string Quote, string Word) Unquote(string? wordToComplete)
    {
        string word = wordToComplete ?? string.Empty;
        if (word.Length > 0 && (word[0] == '\'' || word[0] == '"'))
        {
            string quote = word[..1];
            word = word[1..];
            if (word.EndsWith(quote, StringComparison.Ordinal))
            {
                word = word[..^1];
            }

            return (quote, word);
        }

        return (string.Empty, word);
    }

    public static CompletionResult Result(string quote, string text, string listItem, string toolTip) =>
        new(quote + text + quote, listItem, CompletionResultType.ParameterValue, toolTip);
}
