# Issue 10, finding 8: a looser policy assignment takes a second admin.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('approvals', '0003_policy_proposals_and_checklist_tokens'),
        ('registry', '0003_model_search_trigram'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PolicyAssignment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('state', models.CharField(choices=[('adopted', 'Adopted'), ('proposed', 'Proposed'), ('rejected', 'Rejected')], default='adopted', max_length=16)),
                ('loosens', models.JSONField(blank=True, default=list, help_text='Why the new rules are looser than the ones before.')),
                ('proposed_at', models.DateTimeField(auto_now_add=True)),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('decision_comment', models.CharField(blank=True, max_length=300)),
                ('based_on', models.ForeignKey(blank=True, help_text='The revision that governed the model when the change was made (none: no policy did).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='approvals.policyrevision')),
                ('decided_by', models.ForeignKey(blank=True, help_text='Who made it take effect (the proposer when it took effect at once) or rejected it.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='policy_assignments', to='registry.registeredmodel')),
                ('policy', models.ForeignKey(blank=True, help_text='The policy given to the model; empty: back to the default of its risk tier.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='assignment_changes', to='approvals.policy')),
                ('proposed_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('target', models.ForeignKey(blank=True, help_text='The revision that governs the model once the change takes effect (none: no policy would).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='approvals.policyrevision')),
            ],
            options={
                'ordering': ['-id'],
            },
        ),
        migrations.AddField(
            model_name='approvalrequest',
            name='assignment',
            field=models.ForeignKey(blank=True, help_text="The change of the model's policy that chose this request's policy, when one is recorded.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='requests', to='approvals.policyassignment'),
        ),
        migrations.AddIndex(
            model_name='policyassignment',
            index=models.Index(fields=['model', 'state', '-decided_at'], name='assignment_model_state_idx'),
        ),
        migrations.AddConstraint(
            model_name='policyassignment',
            constraint=models.UniqueConstraint(condition=models.Q(('state', 'proposed')), fields=('model',), name='one_proposed_assignment_per_model'),
        ),
    ]
