using System.Management.Automation;
using System.Management.Automation.Host;

namespace OrasStaging.Commands;

/// <summary>
/// The confirmation of a write onto a block device, for the cmdlets whose file targets stay at the default
/// ConfirmImpact: a device is treated as ConfirmImpact High. -WhatIf says what would be written where; -Confirm
/// asks through ShouldProcess; -Force or -Confirm:$false (or $ConfirmPreference = 'None') skip the question;
/// otherwise the user is asked, and a session that cannot ask (pwsh -NonInteractive, a host without a UI) gets
/// <see cref="ErrorCode.ConfirmationRequired"/> and nothing is written.
/// </summary>
internal static class DeviceConfirmation
{
    /// <summary>True when the write may go ahead; false when -WhatIf was given or the user said no.</summary>
    public static bool Confirm(PSCmdlet cmdlet, bool force, string description, string devicePath, string caption)
    {
        string query = description + Environment.NewLine + "Continue?";
        if (!cmdlet.ShouldProcess(description, query, caption))
        {
            return false;
        }

        bool confirmBound = cmdlet.MyInvocation.BoundParameters.ContainsKey("Confirm");
        if (force || confirmBound || ConfirmPreference(cmdlet) == ConfirmImpact.None)
        {
            return true; // -Confirm:$true was asked in ShouldProcess; -Confirm:$false and -Force say yes
        }

        try
        {
            return cmdlet.ShouldContinue(query, caption);
        }
        catch (Exception ex) when (ex is PSInvalidOperationException or HostException or NotImplementedException or InvalidOperationException)
        {
            throw new OrasStagingException(ErrorCode.ConfirmationRequired,
                $"Writing onto the block device {devicePath} needs confirmation, and this session cannot ask ({ex.Message.TrimEnd('.')}). Nothing was written.",
                "Check that it is the right disk, then run again with -Force or -Confirm:$false.", ex);
        }
    }

    private static ConfirmImpact ConfirmPreference(PSCmdlet cmdlet) =>
        cmdlet.SessionState.PSVariable.GetValue("ConfirmPreference") is { } value
        && Enum.TryParse(value.ToString(), ignoreCase: true, out ConfirmImpact impact)
            ? impact
            : ConfirmImpact.High;
}
